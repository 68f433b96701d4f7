"""``make bench``: apd against a null policy server, same machine, same run, same load generator.

Examples: ``make bench`` (the default table, a few minutes); ``make bench ARGS='--quick'`` (smoke
run); ``make bench ARGS='--scenario apd-core --connections 50 --churn 0 --duration 10'``;
``make bench ARGS='--list'``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Sequence

from bench.measure import (
    CHURN,
    PERSISTENT,
    Cell,
    Measured,
    Options,
    Row,
    apd_server,
    finish,
    measure_cell,
    null_server,
    payload,
    wait_until_answering,
)
from bench.report import cell_order, format_database, format_memory, format_table, verdict
from bench.scenarios import FULL_TABLE, SCENARIOS, Scenario, selected


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="apd throughput and latency against a null policy server.")
    p.add_argument("--scenario", action="append", default=[], help="run this scenario (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--quick", action="store_true", help="smoke run: 0.5 s per cell after 0.2 s warm-up")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per cell (default 4)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell, not counted (default 1)")
    p.add_argument(
        "--connections",
        default="1,10,50,200",
        help="persistent connection counts of the full table (default 1,10,50,200)",
    )
    p.add_argument("--churn", type=int, default=10, help="concurrent clients in churn mode; 0 skips it (default 10)")
    p.add_argument("--workers", type=int, default=0, help="workers of both servers (default: apd's, 2 x CPUs)")
    p.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    return p


def full_table(args: argparse.Namespace) -> tuple[Cell, ...]:
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    cells = [Cell(PERSISTENT, c) for c in counts]
    if args.churn > 0:
        cells.append(Cell(CHURN, args.churn))
    return tuple(cells) or FULL_TABLE


def plan(scenarios: Sequence[Scenario], explicit: set[str], table: tuple[Cell, ...]) -> list[tuple[Scenario, list]]:
    """Cells per scenario. A baseline pulled in only for a ratio runs just the cells it is compared on."""
    own = {s.label: list(s.cells or table) for s in scenarios}
    planned = []
    for scenario in scenarios:
        if scenario.label in explicit or (not explicit and scenario.default):
            cells = own[scenario.label]
        else:
            wanted = {c for s in scenarios if s.baseline == scenario.label for c in own[s.label]}
            cells = sorted(wanted, key=cell_order)
        planned.append((scenario, cells))
    return planned


def start(scenario: Scenario, workers: int, stack: contextlib.ExitStack) -> Any:
    if scenario.settings is None:
        return stack.enter_context(null_server(workers, scenario.parse_requests))
    settings = {"workers": workers, **scenario.settings}
    return stack.enter_context(apd_server(settings, scenario.environment))


def run_all(planned: list[tuple[Scenario, list[Cell]]], options: Options, workers: int) -> list[Measured]:
    """Every server runs at once; the cells are interleaved (null, apd, null, apd ...) so that a
    change in the machine's background load hits both sides of a ratio alike."""
    with contextlib.ExitStack() as stack:
        servers, requests = {}, {}
        for scenario, _ in planned:
            print(f"  starting {scenario.label} ...", flush=True)
            servers[scenario.label] = start(scenario, workers, stack)
            mix = [payload(request) for request in scenario.mix]
            requests[scenario.label] = mix or payload(scenario.request)
            wait_until_answering(servers[scenario.label].address, mix[0] if mix else requests[scenario.label])
        results = {scenario.label: Measured(scenario.label) for scenario, _ in planned}
        for cell in sorted({c for _, cells in planned for c in cells}, key=cell_order):
            print(f"  {cell.mode} {cell.connections}:", end="", flush=True)
            for scenario, cells in planned:
                if cell in cells:
                    label = scenario.label
                    result = measure_cell(servers[label], cell, options, requests[label])
                    results[label].rows.append(Row(label, cell, result))
                    print(f" {label} {result.rate:.0f}/s", end="", flush=True)
            print()
        for scenario, _ in planned:  # while the databases still run
            if scenario.statements:
                results[scenario.label].statements = scenario.statements(servers[scenario.label].apd.settings)
        return [finish(results[s.label], servers[s.label]) for s, _ in planned]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            cells = ", ".join(f"{c.mode} {c.connections}" for c in (s.cells or FULL_TABLE))
            print(f"{s.label:<20} {'default' if s.default else 'on demand':<9}  [{cells}]  {s.doc}")
        return 0
    if args.quick:
        args.duration, args.warmup = 0.5, 0.2
    options = Options(duration=args.duration, warmup=args.warmup, processes=args.processes)
    workers = args.workers or 2 * (os.cpu_count() or 1)
    try:
        scenarios = selected(args.scenario)
    except KeyError as exc:
        print(f"bench: {exc.args[0]}", file=sys.stderr)
        return 2
    planned = plan(scenarios, set(args.scenario), full_table(args))
    print(
        f"apd bench: {os.cpu_count()} CPUs, {workers} workers per server, {options.processes} load generator "
        f"processes, {options.duration:g} s per cell after {options.warmup:g} s warm-up, loopback TCP; "
        f"load average before: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.monotonic()
    results = run_all(planned, options, workers)
    print()
    print(format_table(results, {s.label: s for s in scenarios}))
    print(format_memory(results))
    database = format_database(results)
    if database:
        print(database)
    for m in results:
        if m.statements:
            print(f"  {m.label}: SQL statements per request: {m.statements}")
    print()
    for m in results:
        print(f"  {m.label}: {scenarios_doc(m.label)}; replies seen: {m.note or '(none)'}")
    line = verdict(results)
    if line:
        print()
        print(line)
    print(f"(bench took {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    return 0 if all(any(row.result.replies for row in m.rows) for m in results) else 1


def scenarios_doc(label: str) -> str:
    return next((s.doc for s in SCENARIOS if s.label == label), "")


if __name__ == "__main__":
    sys.exit(main())

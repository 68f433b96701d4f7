"""The bench's printed report: the table, memory, and the verdict on issue 2's target."""

from __future__ import annotations

from bench.database import Snapshot, format_per_request, per_request
from bench.loadgen import LoadResult
from bench.measure import PERSISTENT, Cell, Measured
from bench.scenarios import NULL, NULL_PARSE, Scenario

TARGET_LABEL, TARGET_CELL, TARGET_RATIO = "apd-core", Cell(PERSISTENT, 50), 0.70  # issue 2's goal


def cell_order(cell: Cell) -> tuple:
    return (cell.mode != PERSISTENT, cell.connections)


def rate_of(measured: Measured | None, cell: Cell) -> float:
    """req/s of ``measured`` in ``cell``; 0.0 when it did not run that cell."""
    if measured is None:
        return 0.0
    return next((row.result.rate for row in measured.rows if row.cell == cell), 0.0)


def format_table(results: list[Measured], scenarios: dict[str, Scenario]) -> str:
    by_label = {m.label: m for m in results}
    cells = sorted({row.cell for m in results for row in m.rows}, key=cell_order)
    width = max(12, *(len(m.label) for m in results))
    lines = [
        f"{'server':<{width}} {'mode':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu us/req':>10} {'gen us/req':>10} {'errors':>6}  ratio",
    ]
    for cell in cells:
        for m in results:
            for row in m.rows:
                if row.cell != cell:
                    continue
                r = row.result
                base_label = scenarios[m.label].baseline
                base_rate = rate_of(by_label.get(base_label), cell)
                share = f"{r.rate / base_rate:5.2f} x {base_label}" if base_rate else ""
                figures = (
                    f"{r.rate:>9.0f} {r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} "
                    f"{server_cpu_us(r):>10.1f} {client_cpu_us(r):>10.1f} {r.errors:>6}"
                )
                lines.append(f"{m.label:<{width}} {cell.mode:<10} {cell.connections:>5} {figures}  {share}")
        lines.append("")
    lines.append(
        "cpu us/req: CPU time of all the server's processes per request; gen us/req: the load generator's; "
        "both share the same cores, so req/s ~ cores / (cpu + gen) when nothing else runs."
    )
    return "\n".join(lines)


def server_cpu_us(result: LoadResult) -> float:
    """The server's CPU time (all its processes, user + system) per request: CPU seconds per
    second between the two probes, over the requests per second of the window."""
    if len(result.probes) != 2 or not result.rate:
        return float("nan")
    (t0, cpu0), (t1, cpu1) = result.probes
    if t1 - t0 < 0.1:
        return float("nan")
    return (apd_cpu(cpu1) - apd_cpu(cpu0)) / (t1 - t0) / result.rate * 1e6


def apd_cpu(probed: float | Snapshot) -> float:
    return probed.apd_cpu if isinstance(probed, Snapshot) else probed


def database_figures(result: LoadResult) -> dict[str, float]:
    """The database's CPU and counters per request of the window (empty without a database)."""
    if len(result.probes) != 2 or not all(isinstance(p, Snapshot) for _, p in result.probes):
        return {}
    (_, before), (_, after) = result.probes
    return per_request(before, after, result.replies)


def format_database(results: list[Measured]) -> str:
    """One line per cell of a scenario whose database was watched."""
    lines = []
    for m in results:
        for row in m.rows:
            text = format_per_request(database_figures(row.result))
            if text:
                lines.append(f"  {m.label} {row.cell.mode} {row.cell.connections}: {text}")
    return "\n".join(["database server, per request (its own CPU time and counters):", *lines]) if lines else ""


def client_cpu_us(result: LoadResult) -> float:
    """The load generator's own CPU time per request: the other share of the same two cores."""
    return result.client_cpu / result.client_replies * 1e6 if result.client_replies else float("nan")


def format_memory(results: list[Measured]) -> str:
    lines = ["peak RSS (VmHWM, shared pages counted in every process):"]
    for m in results:
        if not m.rss_kib:
            continue
        pids = list(m.rss_kib)
        master, workers = m.rss_kib[pids[0]], [m.rss_kib[p] for p in pids[1:]]
        biggest = max(workers) if workers else 0
        lines.append(
            f"  {m.label}: master {master / 1024:.1f} MiB, {len(workers)} workers max {biggest / 1024:.1f} MiB each, "
            f"sum {sum(m.rss_kib.values()) / 1024:.1f} MiB"
        )
    lines.append("PSS at the end (smaps_rollup; shared pages divided among the processes sharing them):")
    for m in results:
        if not m.pss_kib:
            continue
        pids = list(m.pss_kib)
        master, workers = m.pss_kib[pids[0]], [m.pss_kib[p] for p in pids[1:]]
        lines.append(
            f"  {m.label}: master {master / 1024:.1f} MiB, {len(workers)} workers "
            f"{sum(workers) / 1024:.1f} MiB, total {sum(m.pss_kib.values()) / 1024:.1f} MiB"
        )
    return "\n".join(lines)


def verdict(results: list[Measured]) -> str | None:
    by_label = {m.label: m for m in results}
    apd, null = by_label.get(TARGET_LABEL), by_label.get(NULL)
    if apd is None or null is None:
        return None
    apd_rate, null_rate = rate_of(apd, TARGET_CELL), rate_of(null, TARGET_CELL)
    if not apd_rate or not null_rate:
        return None
    share = apd_rate / null_rate
    state = "met" if share >= TARGET_RATIO else "NOT met"
    line = (
        f"target: {TARGET_LABEL} at {TARGET_CELL.connections} connections reaches {share:.0%} of the null server's "
        f"throughput (goal >= {TARGET_RATIO:.0%}): {state}"
    )
    parse_rate = rate_of(by_label.get(NULL_PARSE), TARGET_CELL)
    if parse_rate:
        line += (
            f"\n  for reference: {NULL_PARSE} reaches {parse_rate / null_rate:.0%} of null, "
            f"and {TARGET_LABEL} {apd_rate / parse_rate:.0%} of {NULL_PARSE}"
        )
    return line

"""Run the load cells against one server and collect the figures for the table."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.database import DATABASE_KEY, Snapshot
from bench.loadgen import LoadResult, Payload, run_load
from bench.servers import ApdServer, NullServer, cpu_seconds, peak_rss_kib, pss_kib
from tests.helpers.policy_client import rcpt, request_bytes

PERSISTENT, CHURN = "persistent", "churn"
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class Cell:
    mode: str  # PERSISTENT or CHURN
    connections: int


@dataclass(frozen=True)
class Options:
    duration: float = 4.0
    warmup: float = 1.0
    processes: int = 2  # load generator processes


@dataclass
class Row:
    label: str
    cell: Cell
    result: LoadResult


@dataclass
class Measured:
    label: str
    rows: list[Row] = field(default_factory=list)
    rss_kib: dict[int, int] = field(default_factory=dict)  # pid -> peak RSS; the first pid is the master
    pss_kib: dict[int, int] = field(default_factory=dict)  # pid -> PSS at the end; the first pid is the master
    note: str = ""
    statements: str = ""  # SQL statements per request, when the scenario counts them


def payload(request: dict[str, str] | None = None) -> bytes:
    """The request every connection sends: a typical RCPT from an outside client, plus overrides."""
    return request_bytes(**rcpt(**(request or {})))


def snapshot(server: Any) -> Snapshot:
    """The server's CPU time so far and, beside an apd with a watched database, the database's."""
    database = getattr(server, "database", None)
    if database is None:
        return Snapshot(cpu_seconds(server.pid))
    return Snapshot(cpu_seconds(server.pid), database.cpu(), database.counters())


def measure_cell(server: Any, cell: Cell, options: Options, request: Payload) -> LoadResult:
    """One cell against a started ``server`` (it has ``address`` and ``pid``), with its CPU time
    (and its database's figures, when it has one: ``Snapshot``)."""
    return run_load(
        server.address,
        cell.connections,
        request,
        duration=options.duration,
        warmup=options.warmup,
        churn=cell.mode == CHURN,
        processes=options.processes,
        probe=lambda: snapshot(server),
    )


def finish(measured: Measured, server: Any) -> Measured:
    """Peak memory and the replies seen, once the cells have run."""
    measured.rss_kib = peak_rss_kib(server.pid)
    measured.pss_kib = pss_kib(server.pid)
    replies = {row.result.first_reply.decode(errors="replace") for row in measured.rows if row.result.first_reply}
    measured.note = ", ".join(sorted(replies))
    if not any(row.result.replies for row in measured.rows) and hasattr(server, "log_tail"):
        measured.note += f" NO REPLIES; apd log:\n{server.log_tail()}"
    return measured


def measure(label: str, server: Any, cells: Sequence[Cell], options: Options, request: bytes) -> Measured:
    """Run ``cells`` one after the other against a started ``server``."""
    wait_until_answering(server.address, request)
    measured = Measured(label)
    for cell in cells:
        measured.rows.append(Row(label, cell, measure_cell(server, cell, options, request)))
    return finish(measured, server)


def wait_until_answering(address: tuple[str, int], request: bytes, clients: int = 8) -> None:
    """A listening port is not a ready server (workers may still be importing): ask a real question."""
    sockets = [socket.create_connection(address, timeout=READY_TIMEOUT) for _ in range(clients)]
    try:
        for sock in sockets:
            sock.sendall(request)
        for sock in sockets:
            reply = b""
            while b"\n\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError(f"server at {address} closed the connection instead of answering")
                reply += chunk
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def null_server(workers: int, parse: bool = False) -> Iterator[NullServer]:
    with NullServer(workers, parse) as server:
        yield server


@contextlib.contextmanager
def _no_environment(workdir: Path) -> Iterator[dict[str, Any]]:
    yield {}


@contextlib.contextmanager
def apd_server(settings: dict[str, Any], environment: Any = None) -> Iterator[ApdServer]:
    """A running apd with ``settings`` plus what ``environment(workdir)`` yields.

    ``environment`` is a context manager factory for scenarios that need more than a settings
    dict: start a database server, fill tables, yield the settings that point apd at it.
    """
    with tempfile.TemporaryDirectory(prefix="apd-bench-") as tmp:
        workdir = Path(tmp)
        with (environment or _no_environment)(workdir) as extra:
            extra = dict(extra)
            database = extra.pop(DATABASE_KEY, None)
            with ApdServer(workdir / "apd", {**settings, **extra}) as server:
                server.database = database
                try:
                    yield server
                finally:
                    if database is not None:
                        database.close()


def measure_apd(
    label: str,
    settings: dict[str, Any],
    cells: Sequence[Cell],
    options: Options,
    request: bytes,
    environment: Any = None,
) -> Measured:
    """The same measurement for any apd settings: start apd, run the cells, stop it."""
    with apd_server(settings, environment) as server:
        return measure(label, server, cells, options, request)

"""Where a scenario's statements and time go, check by check: its mix replayed in this process
through apd's own checks and store, with every statement apd sends counted on the client side.

A fact shared through the request context (alias domains, SPF) is charged to the first check
that asks for it, as in a real request. ``smtp_sessions`` is the session row the worker writes
after the reply (``Policy.log_session``), here one batch per request.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

SESSIONS = "smtp_sessions"


class CountingDialect:
    """A store dialect whose connections report every statement to ``seen`` (SQL text)."""

    def __init__(self, dialect: Any, seen: list[str]):
        self._dialect = dialect
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dialect, name)

    def connect(self) -> Any:
        return _CountingConnection(self._dialect.connect(), self._seen)


class _CountingConnection:
    def __init__(self, conn: Any, seen: list[str]):
        self._conn = conn
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def cursor(self) -> Any:
        return _CountingCursor(self._conn.cursor(), self._seen)


class _CountingCursor:
    def __init__(self, cursor: Any, seen: list[str]):
        self._cursor = cursor
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def execute(self, sql: str, params: Any = None) -> Any:
        self._seen.append(sql)
        return self._cursor.execute(sql, params)

    def executemany(self, sql: str, params: Any) -> Any:
        self._seen.append(sql)  # PyMySQL sends an INSERT's rows as one statement
        return self._cursor.executemany(sql, params)


@dataclass
class CheckCost:
    name: str
    asked: int = 0  # requests that reached the check
    decided: int = 0  # requests it answered (ended the chain)
    seconds: float = 0.0
    rows_read: int = 0  # MariaDB: rows and index entries its statements read (Handler_read_*)
    db_seconds: float = 0.0  # MariaDB: its CPU time meanwhile (clock ticks: a sum over many requests)
    statements: Counter = field(default_factory=Counter)  # statement shape -> count


def shape(sql: str) -> str:
    """A statement without its values' placeholders repeated: the first words and its tables."""
    words = " ".join(sql.split())
    verb = words.split(" ", 1)[0].upper()
    tables = sorted(set(re.findall(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)", words, re.IGNORECASE)))
    return f"{verb} {', '.join(tables)}".strip()


def profile(
    settings: dict[str, Any],
    mix: Sequence[dict[str, str]],
    rounds: int = 3,
    server_work: bool = True,
    settle: float = 0.0,
) -> list[CheckCost]:
    """Replay ``mix`` ``rounds`` times through the checks of ``settings``; cost per check (on
    MariaDB with ``server_work`` also its CPU time and the rows read, which costs two more
    statements per check). With ``settle`` the mix is first replayed once, uncounted, and the
    replay waits that long: caches filled (SPF answers), change windows closed (a worker's
    list caches watch recent rows for LATE_COMMIT_SECONDS after loading them), as in a worker
    that has been running for a while."""
    from apd import checks as registry
    from apd.context import RequestContext
    from apd.policy import Policy, ends_chain
    from apd.protocol import PolicyRequest
    from apd.settings import defaults
    from apd.store import open_store

    apd_settings = defaults().replace(**settings)
    store = open_store(apd_settings)
    seen: list[str] = []
    server = ServerWork(store.iredapd.dialect.connect()) if server_work and apd_settings.backend == "mysql" else None
    for database in store.databases():
        database.dialect = CountingDialect(database.dialect, seen)
    planned, _ = registry.plan(apd_settings)
    chain = registry.instantiate(planned, apd_settings, store)
    policy = Policy(chain, apd_settings, store)
    costs = {check.name: CheckCost(check.name) for check in chain}
    costs[SESSIONS] = CheckCost(SESSIONS)
    requests = [PolicyRequest.build(attrs) for attrs in mix]
    try:
        if settle:
            for request in requests:
                policy.decide(request)
            time.sleep(settle)
        for _ in range(rounds):
            for request in requests:
                ctx = RequestContext(request, store, policy.trusted)
                action = "DUNNO"
                for check in chain:
                    if request.protocol_state not in check.states:
                        continue
                    result = _timed(costs[check.name], seen, server, check.check, request, ctx)
                    if ends_chain(result):
                        costs[check.name].decided += 1
                        action = result or "DUNNO"
                        break
                _timed(costs[SESSIONS], seen, server, _log_session, policy, request, action, ctx.now)
    finally:
        for check in chain:
            check.close()
        store.close()
        if server is not None:
            server.close()
    return list(costs.values())


class ServerWork:
    """What MariaDB did for a check: its CPU time (/proc of mariadbd, same host) and its
    Handler_read_* total (read on a connection of its own; ``rows_since`` leaves out what
    reading the counters costs by itself, measured once, when made)."""

    def __init__(self, conn: Any):
        self.conn = conn
        with conn.cursor() as cur:
            cur.execute("SELECT @@pid_file")
            self.pid = int(Path(cur.fetchone()[0]).read_text().split()[0])
        first = self.rows()
        self.own = self.rows() - first

    def rows(self) -> int:
        from bench.database import STATUS_SQL, rows_read

        with self.conn.cursor() as cur:
            cur.execute(STATUS_SQL)
            return rows_read({str(name): int(value) for name, value in cur.fetchall()})

    def rows_since(self, before: int) -> int:
        return max(0, self.rows() - before - self.own)

    def cpu(self) -> float:
        from bench.servers import cpu_seconds

        return cpu_seconds(self.pid)

    def close(self) -> None:
        self.conn.close()


def _log_session(policy: Any, request: Any, action: str, now: float) -> None:
    """The session row queued and written at once: the worker batches rows after the replies,
    so one INSERT per logged request is the most this can cost."""
    policy.log_session(request, action, now)
    policy.sessions.flush()


def _timed(cost: CheckCost, seen: list[str], server: ServerWork | None, run: Any, *args: Any) -> Any:
    before = len(seen)
    rows_before = server.rows() if server is not None else 0
    cpu_before = server.cpu() if server is not None else 0.0
    started = time.perf_counter()
    result = run(*args)
    cost.seconds += time.perf_counter() - started
    if server is not None:
        cost.db_seconds += server.cpu() - cpu_before
        cost.rows_read += server.rows_since(rows_before)
    cost.asked += 1
    cost.statements.update(shape(sql) for sql in seen[before:])
    return result


def format_profile(costs: list[CheckCost], requests: int) -> str:
    """Per check, per request of the whole mix: statements, time, and the statement shapes."""
    total = sum(sum(c.statements.values()) for c in costs) / requests
    lines = [
        f"per check, per request of the mix (replayed in one process, {requests} requests): {total:.2f} statements"
    ]
    for cost in sorted(costs, key=lambda c: -c.seconds):
        count = sum(cost.statements.values())
        shapes = ", ".join(f"{name} {n / requests:.2f}" for name, n in cost.statements.most_common(4))
        lines.append(
            f"  {cost.name:<29} asked {cost.asked / requests:4.0%} decided {cost.decided / requests:4.0%} "
            f"{count / requests:5.2f} stmts {cost.rows_read / requests:6.1f} rows {cost.seconds / requests * 1e6:5.0f} us"
            f" (db cpu {cost.db_seconds / requests * 1e6:4.0f} us)  {shapes}"
        )
    return "\n".join(lines)

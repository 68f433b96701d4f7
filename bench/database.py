"""The database server beside apd: its CPU time and its own statement counters, read when a
measurement window opens and when it closes, so that both become figures per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.servers import cpu_seconds

# A scenario's environment yields this key beside apd's settings: the watch of its database
# server (bench/measure.py takes it out before apd sees the settings).
DATABASE_KEY = "_bench_database"

# Rows and index entries the storage engines were asked for (the server's work beside parsing).
ROWS_READ = ("Handler_read_first", "Handler_read_key", "Handler_read_next", "Handler_read_rnd_next")
# MariaDB's counters: Questions counts every statement a client sent, one round trip each (apd
# sends neither multi-statements nor pings); the Com_* split them by kind.
COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
    *ROWS_READ,
)
STATUS_SQL = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(", ".join(f"'{c}'" for c in COUNTERS))
# PostgreSQL counts no statements: with apd's autocommit connections each statement outside an
# explicit transaction is one transaction (a BEGIN ... COMMIT block counts once).
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched")
PG_STATUS_SQL = "SELECT {} FROM pg_stat_database".format(", ".join(f"SUM({c})" for c in PG_COUNTERS))
OWN_STATEMENTS = {"Questions": 1, "xact_commit": 1}  # what one reading of the counters adds to them itself


@dataclass(frozen=True)
class Snapshot:
    """What a probe reads at one instant: apd's CPU seconds, the database's, its counters."""

    apd_cpu: float
    db_cpu: float | None = None
    counters: dict[str, int] = field(default_factory=dict)


class MariaDBWatch:
    """Reads a MariaDB test server's (tests/helpers/mariadb.py) CPU time and global counters."""

    def __init__(self, server: Any):
        self.server = server
        self._conn: Any = None

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def counters(self) -> dict[str, int]:
        if self._conn is None:
            self._conn = self.server._root()
        with self._conn.cursor() as cur:
            cur.execute(STATUS_SQL)
            return {str(name): int(value) for name, value in cur.fetchall()}

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresWatch(MariaDBWatch):
    """The same for a PostgreSQL test server (tests/helpers/postgres.py): the postmaster and its
    backends' CPU time, pg_stat_database's totals (updated by each backend within a second)."""

    def counters(self) -> dict[str, int]:
        if self._conn is None:
            self._conn = self.server._root()
        with self._conn.cursor() as cur:
            cur.execute(PG_STATUS_SQL)
            return {name: int(value or 0) for name, value in zip(PG_COUNTERS, cur.fetchone())}


def per_request(before: Snapshot, after: Snapshot, requests: int) -> dict[str, float]:
    """The database's CPU microseconds (``db_us``) and each counter per request between two
    snapshots; the probe's own statements are not counted. Empty without database figures."""
    if before.db_cpu is None or after.db_cpu is None or requests <= 0:
        return {}
    figures = {"db_us": (after.db_cpu - before.db_cpu) / requests * 1e6}
    for name, value in after.counters.items():
        if name in before.counters:
            figures[name] = (value - before.counters[name] - OWN_STATEMENTS.get(name, 0)) / requests
    return figures


def format_per_request(figures: dict[str, float]) -> str:
    """One line: database CPU, round trips and the statements by kind, per request."""
    if not figures:
        return ""
    kinds = ", ".join(
        f"{name[4:].upper()} {figures[name]:.2f}" for name in COUNTERS if name.startswith("Com_") and figures.get(name)
    )
    line = f"db cpu {figures['db_us']:.0f} us/req"
    if "Questions" in figures:
        line += f", {figures['Questions']:.2f} statements (= round trips)/req: {kinds or 'none'}"
    if "xact_commit" in figures:
        line += f", {figures['xact_commit']:.2f} transactions (autocommit statements)/req"
        line += f"; rows returned + fetched {figures['tup_returned'] + figures['tup_fetched']:.1f}/req"
    if all(name in figures for name in ROWS_READ):
        line += f"; rows and index entries read (Handler_read_*) {sum(figures[n] for n in ROWS_READ):.1f}/req"
    return line


def rows_read(counters: dict[str, int]) -> int:
    return sum(counters.get(name, 0) for name in ROWS_READ)

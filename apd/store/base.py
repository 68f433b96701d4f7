"""One SQL database connection per worker, reused across requests, re-opened after failures.

Queries are written once with ``%s`` placeholders; a ``Dialect`` adapts them (SQLite wants
``?``) and hides the differences (upserts, error classification, connecting).
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

from apd.errors import Conflict, DuplicateKey, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

# After a failed connect, requests fail fast for this long (doubling up to the max)
# instead of waiting on a dead server each time.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
# Pause before re-running a statement that lost a deadlock (seconds, plus up to as much again).
CONFLICT_PAUSE = 0.02


class Dialect:
    """What differs between SQLite, MySQL/MariaDB and PostgreSQL. Subclasses live beside this file."""

    name = "generic"
    placeholder = "%s"
    # Does '=' on VARCHAR compare case-insensitively (MySQL's *_ci collations)?
    case_insensitive_text = False
    # Does INSERT ... ON CONFLICT / ON DUPLICATE KEY UPDATE ... RETURNING work? (PostgreSQL,
    # SQLite >= 3.35, MariaDB >= 10.5: yes; MySQL: no, callers then use a transaction.)
    supports_upsert_returning = True

    def connect(self) -> Any:
        raise NotImplementedError

    def classify(self, exc: BaseException) -> str:
        """'unavailable', 'timeout' (an outage too, but not retried), 'duplicate', 'conflict'
        (deadlock / serialization failure: retried once outside a transaction), or 'error'
        for a driver exception."""
        raise NotImplementedError

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def begin_sql(self) -> str:
        return "BEGIN"

    def insert_ignore(self, table: str, columns: Sequence[str], conflict: Sequence[str]) -> str:
        """INSERT that silently skips a row whose unique key exists."""
        cols = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(conflict)}) DO NOTHING"

    def upsert(self, table: str, columns: Sequence[str], conflict: Sequence[str], update_sql: str) -> str:
        """INSERT ... or, on conflict of ``conflict``, run ``update_sql`` (assignments in
        PostgreSQL/SQLite form, where ``excluded.col`` names the proposed value)."""
        cols = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        return (
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {update_sql}"
        )

    def adapt(self, sql: str) -> str:
        return _adapt(sql, self.placeholder)

    def prepare_connection(self, conn: Any) -> None:
        """Hook run after each (re)connect."""


class ServerDialect(Dialect):
    """A dialect reached over the network (MySQL/MariaDB, PostgreSQL): where and how to connect."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        timeout: float,
        use_ssl: bool = False,
    ):
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self.timeout = timeout
        self.use_ssl = use_ssl


@lru_cache(maxsize=1024)
def _adapt(sql: str, placeholder: str) -> str:
    return sql if placeholder == "%s" else sql.replace("%s", placeholder)


def in_list(values: Sequence[Any]) -> str:
    """'%s, %s, %s' for an IN (...) clause; callers pass the values as parameters."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return ", ".join(["%s"] * len(values))


class Database:
    """A lazily opened connection with fail-fast back-off and one log line per state change."""

    def __init__(self, label: str, dialect: Dialect, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.dialect = dialect
        self._clock = clock
        self._conn: Any = None
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._in_transaction = False
        # (database, kind) of each error, when metrics are on (the worker sets it)
        self.on_error: Callable[[str, str], None] | None = None
        self.name = label.split(" ", 1)[0].split(":", 1)[0]  # vmail, amavisd, iredapd or sqlite

    # --- connection management

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        now = self._clock()
        if self._down_since is not None and now < self._retry_at:
            raise self._error(
                StoreUnavailable, f"is unavailable (retrying in {self._retry_at - now:.1f}s)", "unavailable"
            )
        try:
            conn = self.dialect.connect()
            self.dialect.prepare_connection(conn)
        except Exception as exc:  # any driver error while connecting is an outage
            self._mark_down(exc)
            raise self._error(StoreUnavailable, f"is unavailable: {exc}", "unavailable") from exc
        if self._down_since is not None:
            log.warning("database %s is reachable again", self.label)
        self._down_since = None
        self._backoff = BACKOFF_FIRST
        self._conn = conn
        return conn

    def _error(self, kind_of_error: type[StoreError], text: str, kind: str) -> StoreError:
        """The exception to raise, naming this database (``database``: for the fail-safe count),
        and reported to ``on_error`` when metrics are on."""
        separator = "" if text.startswith(":") else " "
        error = kind_of_error(f"database {self.label}{separator}{text}")
        error.database = self.name  # type: ignore[attr-defined]
        if self.on_error is not None:
            self.on_error(self.name, kind)
        return error

    def _mark_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.error("database %s is unavailable: %s", self.label, _one_line(exc))
            self._down_since = self._clock()
        else:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._retry_at = self._clock() + self._backoff

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass
            self._conn = None

    @property
    def available(self) -> bool:
        return self._down_since is None

    # --- statements

    def _run(self, sql: str, params: Sequence[Any], fetch: bool, many: bool = False) -> Any:
        text = self.dialect.adapt(sql)
        # A connection that was idle may have been closed by the server: one silent retry,
        # but never inside a transaction (its earlier statements would be lost).
        attempts = 1 if self._in_transaction else 2
        for attempt in range(attempts):
            conn = self._connection()
            try:
                cursor = conn.cursor()
                try:
                    if many:
                        cursor.executemany(text, params)
                    else:
                        cursor.execute(text, tuple(params))
                    if fetch:
                        return cursor.fetchall()
                    return cursor.rowcount
                finally:
                    cursor.close()
            except self.dialect.driver_errors() as exc:
                kind = self.dialect.classify(exc)
                if kind == "duplicate":
                    raise DuplicateKey(str(exc)) from exc
                if kind == "conflict" and attempt + 1 < attempts:
                    # A deadlock victim outside a transaction was undone: run it again after a short
                    # random pause, so the winner gets its locks first instead of a new deadlock.
                    time.sleep(CONFLICT_PAUSE * (1 + random.random()))
                    continue
                if kind in ("unavailable", "timeout"):
                    self.close()
                    # A timeout is never retried: the request must get its answer within one.
                    if kind == "unavailable" and attempt + 1 < attempts and self._down_since is None:
                        continue
                    self._mark_down(exc)
                    raise self._error(StoreUnavailable, f"is unavailable: {_one_line(exc)}", kind) from exc
                if kind == "conflict":  # in a transaction (or twice): the caller may run it all again
                    raise self._error(Conflict, f": {_one_line(exc)}", kind) from exc
                raise self._error(StoreError, f": {_one_line(exc)}", kind) from exc
        raise AssertionError("unreachable")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self._run(sql, params, fetch=True))

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        rows = self._run(sql, params, fetch=True)
        return tuple(rows[0]) if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._run(sql, params, fetch=False)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._run(sql, rows, fetch=False, many=True) if rows else 0

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """Statements inside run in one transaction (autocommit otherwise)."""
        if self._in_transaction:
            yield self
            return
        self.execute(self.dialect.begin_sql())
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            try:
                if self._conn is not None:
                    self.execute("ROLLBACK")
            except StoreError:
                self.close()
            raise
        try:
            # Still "in the transaction": one attempt. A COMMIT retried on a new connection would
            # succeed with nothing to commit, and the caller would take lost writes as done.
            self.execute("COMMIT")
        except StoreError:
            self.close()
            raise
        finally:
            self._in_transaction = False

    def run_script(self, script: str) -> None:
        """Run DDL statements separated by ';' lines (used by ``apd --init-db``)."""
        for statement in split_statements(script):
            self.execute(statement)


def split_statements(script: str) -> list[str]:
    statements, current = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

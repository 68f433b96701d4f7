"""The databases during one ``apd explain`` run: every statement recorded, every write undone.

The checks take the daemon's own code path, so their writes run too, but inside a transaction
that ``undo()`` rolls back after each check:

* the transaction opens at a check's first write, not before, and ends with that check, so the
  write lock (SQLite: the whole database) is held for the few statements from that write to the
  end of the check, never across another check's DNS lookups: a live daemon's writers wait for
  explain no longer than for one of its own requests;
* a transaction the store opens itself (``Database.transaction``: the two throttle counters of one
  message, a counter's creation) becomes a savepoint inside it, so its COMMIT or ROLLBACK acts as
  it would in the daemon (a refused counter's partner is undone) and nothing is ever committed;
* a statement outside the store's own transactions runs in a savepoint of its own, so that its
  failure undoes only itself, as in the daemon's autocommit (PostgreSQL would otherwise refuse
  every later statement of the transaction);
* a write never runs outside the transaction: when the connection was lost (and reopened by the
  store) the transaction is begun again on the new one, and no statement is retried on a new
  connection while it is open (its earlier writes would be gone and the retry kept).

``Database._run`` is the one door every statement goes through; wrapping it on the instance keeps
the store's code, and so the daemon's cost, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from apd.errors import StoreError

MAX_ROWS_SHOWN = 20
_READS = ("SELECT", "SHOW")
_BEGIN, _COMMIT, _ROLLBACK = "BEGIN", "COMMIT", "ROLLBACK"


@dataclass
class Statement:
    database: str
    sql: str
    params: list[Any]
    rows: list[list[Any]] | None = None  # a read: the rows returned (at most MAX_ROWS_SHOWN)
    row_count: int = 0  # rows returned, or rows a write changed
    write: bool = False  # undone: the daemon would have kept it
    error: str = ""


def verb(sql: str) -> str:
    """The statement's first word, upper-case (pure)."""
    words = sql.split(None, 1)
    return words[0].upper() if words else ""


def is_write(sql: str) -> bool:
    """Anything but a read counts as a write (a CTE or a driver's own statement too: the safe side)."""
    return verb(sql) not in _READS


def plain(value: Any) -> Any:
    """A column value as JSON can hold it."""
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass
class _Open:
    """The transaction explain holds on one database."""

    conn: Any = None  # the connection it runs on; None: no transaction open
    savepoints: list[str] = field(default_factory=list)
    made: int = 0  # savepoints made, for unique names


class SandboxedDatabase:
    """One database's recorded, undone statements (installed on the Database instance)."""

    def __init__(self, database: Any, record: Callable[[Statement], None]):
        self.database = database
        self.record = record
        self.run = database._run  # the store's own door, called for every real statement
        self.open = _Open()
        self.own_attribute = "_run" in vars(database)
        database._run = self.recorded

    def close(self) -> None:
        """The database as it was (a test's daemon may use the same store next)."""
        if self.own_attribute:
            self.database._run = self.run
        else:
            del self.database._run

    def recorded(self, sql: str, params: Any, fetch: bool, many: bool = False) -> Any:
        word = verb(sql)
        if word == _BEGIN:
            return self._savepoint()
        if word in (_COMMIT, _ROLLBACK):
            return self._end_savepoint(undo=word == _ROLLBACK)
        write = is_write(sql)
        if write:
            self._begin()
        statement = Statement(
            self.database.name, " ".join(sql.split()), [list(p) for p in params] if many else list(params), write=write
        )
        self.record(statement)
        try:
            if self._holding() and not self.open.savepoints:
                result = self._alone(sql, params, fetch, many)
            else:
                result = self._real(sql, params, fetch, many)
        except StoreError as exc:
            statement.error = str(exc)
            raise
        if fetch:
            rows = [list(row) for row in result]
            statement.row_count = len(rows)
            statement.rows = [[plain(v) for v in row] for row in rows[:MAX_ROWS_SHOWN]]
        else:
            statement.row_count = int(result or 0)
        return result

    def undo(self) -> None:
        """Roll back what the check wrote (the end of each check)."""
        holding, self.open = self._holding(), _Open()
        if not holding:
            return  # nothing written, or its connection is gone, and the server undid it
        try:
            self._real(_ROLLBACK, (), False)
        except StoreError:
            self.database.close()  # a connection closed without COMMIT keeps nothing either

    def _real(self, sql: str, params: Any, fetch: bool, many: bool = False) -> Any:
        """One statement; inside explain's transaction never retried on a new connection."""
        database = self.database
        if self.open.conn is None:
            return self.run(sql, params, fetch, many)
        saved = database._in_transaction
        database._in_transaction = True
        try:
            return self.run(sql, params, fetch, many)
        finally:
            database._in_transaction = saved

    def _alone(self, sql: str, params: Any, fetch: bool, many: bool) -> Any:
        """A statement outside the store's own transactions runs alone in the daemon (autocommit):
        its failure (a duplicate key lost to a live daemon, a timeout) must undo only itself, as
        PostgreSQL would otherwise refuse every later statement of explain's transaction."""
        name = self._savepoint_name()
        self._real(f"SAVEPOINT {name}", (), False)
        try:
            result = self._real(sql, params, fetch, many)
        except StoreError:
            if self._holding():
                try:
                    self._real(f"ROLLBACK TO SAVEPOINT {name}", (), False)
                except StoreError:
                    self.database.close()  # the transaction goes with it: nothing was kept
            raise
        self._real(f"RELEASE SAVEPOINT {name}", (), False)
        return result

    def _savepoint_name(self) -> str:
        self.open.made += 1
        return f"apd_explain_{self.open.made}"

    def _holding(self) -> bool:
        """Is explain's transaction open on the connection the database has now?"""
        return self.open.conn is not None and self.open.conn is self.database._conn

    def _begin(self) -> None:
        if self._holding():
            return
        self.open = _Open()
        self.run(self.database.dialect.begin_sql(), (), False)
        self.open.conn = self.database._conn

    def _savepoint(self) -> int:
        self._begin()
        name = self._savepoint_name()
        self.open.savepoints.append(name)
        return self._real(f"SAVEPOINT {name}", (), False)

    def _end_savepoint(self, undo: bool) -> int:
        if not self.open.savepoints or not self._holding():
            self.open.savepoints.clear()
            return 0  # explain's own transaction is never committed; a lost one is gone
        name = self.open.savepoints.pop()
        if undo:
            self._real(f"ROLLBACK TO SAVEPOINT {name}", (), False)
        return self._real(f"RELEASE SAVEPOINT {name}", (), False)


class Sandbox:
    """Every database of a store, sandboxed; ``record`` receives each statement as it runs."""

    def __init__(self, databases: list[Any], record: Callable[[Statement], None]):
        self.databases = [SandboxedDatabase(database, record) for database in databases]

    def undo(self) -> None:
        for database in self.databases:
            database.undo()

    def close(self) -> None:
        for database in self.databases:
            database.close()

"""Embedded SQLite backend (stdlib sqlite3): the default, one file holding every table."""

from __future__ import annotations

import os
import pwd
import sqlite3
from importlib import resources
from typing import Any

from apd.store.base import Database, Dialect


class SqliteDialect(Dialect):
    name = "sqlite"
    placeholder = "?"
    # BLOB and TEXT never compare equal: amavisd emails may be stored either way.
    blob_text_distinct = True

    def __init__(self, path: str, timeout: float = 5.0):
        self.path = path
        self.timeout = timeout

    def connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE).
        return sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)

    def prepare_connection(self, conn: Any) -> None:
        conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, sqlite3.IntegrityError):
            return "duplicate" if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc) else "error"
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "locked" in text or "unable to open" in text or "disk I/O" in text or "busy" in text:
                return "unavailable"
        return "error"

    def begin_sql(self) -> str:
        return "BEGIN IMMEDIATE"  # take the write lock up front: read-modify-write stays exact


SYSTEM_PATH = "/var/lib/apd/apd.sqlite3"


def default_path(run_as_user: str | None = None) -> str:
    """The system database for root and for the daemon's own account (``run_as_user``: the admin
    tools' systemd timers and cron jobs run as that account and must use the daemon's file),
    else a per-user state file."""
    if os.geteuid() == 0 or (run_as_user and _user_name() == run_as_user):
        return SYSTEM_PATH
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "apd", "apd.sqlite3")


def _user_name() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


def ddl() -> str:
    return resources.files("apd.store").joinpath("ddl/sqlite.sql").read_text(encoding="utf-8")


def open_database(path: str, timeout: float) -> Database:
    return Database(f"sqlite:{path}", SqliteDialect(path, timeout))


def write_problem(path: str, timeout: float) -> str:
    """'' when this process can write the database as a worker does, else why not: a write in
    a transaction that is rolled back, on a connection set up as the workers' (WAL mode, so the
    -wal and -shm files beside the database are created too)."""
    dialect = SqliteDialect(path, timeout)
    try:
        conn = dialect.connect()
        try:
            dialect.prepare_connection(conn)
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE apd_write_check (id INTEGER)")
                if str(mode).lower() == "wal" and not os.path.exists(path + "-wal"):
                    return f"no {path}-wal after a write"
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        return str(exc)
    return ""


def account_write_problem(user: pwd.struct_passwd | None, path: str, timeout: float) -> str:
    """'' when ``user`` (None: this process) can write the database as workers do, else what
    stops it and the fix (asked of the account itself, apd/privileges.py)."""
    from apd.privileges import ask_as, user_name, why_unwritable

    directory = os.path.dirname(path)

    def question() -> str:
        problem = write_problem(path, timeout)
        return "\t".join((problem, *why_unwritable(directory))) if problem else ""

    answer = ask_as(user, question)
    if not answer:
        return ""
    problem, blocker, detail = (answer.split("\t") + ["", ""])[:3]
    account = user.pw_name if user is not None else user_name(os.geteuid())
    own = os.path.dirname(SYSTEM_PATH)
    if blocker == directory:
        return (
            f"sqlite_db_path's folder {directory} is not writable by {account} ({detail}; SQLite creates"
            f" {os.path.basename(path)}-wal and -shm there): use a folder of its own such as {own},"
            f" or chown {account} {directory}"
        )
    if blocker:
        return (
            f"sqlite_db_path {path} is out of reach of {account} ({detail}): use a folder of its own"
            f" such as {own}, or chmod o+x {blocker}"
        )
    return f"{account} cannot write the SQLite database {path}: {problem}"


def initialise(db: Database) -> int:
    """Create every table that is missing (idempotent); a new database gets the default
    greylisting whitelist domains. Returns how many domains were seeded."""
    from apd.store.greylisting_whitelists import create_tables_and_seed

    return create_tables_and_seed(db, lambda: db.run_script(ddl()))

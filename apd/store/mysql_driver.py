"""Which MySQL driver apd uses: mysqlclient (``MySQLdb``, C) when it imports, else PyMySQL.

Both connect with the same options (autocommit, utf8mb4, bounded connect/read/write, rows
matched as rowcount, TLS only with ``*_db_use_ssl``, the lock-wait bound) and raise PEP 249
exceptions carrying the same MySQL error codes, so the dialect above treats them alike.

``APD_MYSQL_DRIVER`` (``mysqlclient`` or ``pymysql``; empty or unset: automatic) forces one.
It is read here only: the tests run on each driver, and an operator can step back to PyMySQL
without uninstalling mysqlclient.
"""

from __future__ import annotations

import importlib
import math
import os
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, Callable, Mapping

DRIVER_ENV = "APD_MYSQL_DRIVER"
MODULES = {"mysqlclient": "MySQLdb", "pymysql": "pymysql"}
LABELS = {"mysqlclient": "mysqlclient (C)", "pymysql": "PyMySQL (pure Python)"}
AUTOMATIC = ("mysqlclient", "pymysql")  # the C driver costs apd ~20% less CPU per request (README)
INSTALL = {
    "mysqlclient": "apt install libmariadb-dev pkg-config, then pip install 'apd[mysql-c]'",
    "pymysql": "pip install 'apd[mysql]'",
}
PACKAGE = {"mysqlclient": "mysqlclient", "pymysql": "PyMySQL"}
LOST_DURING_QUERY = 2013  # CR_SERVER_LOST: also what a read timeout raises
TIMED_OUT = "timed out"  # in PyMySQL's message of a timeout; added to mysqlclient's (see timed_cursor)


class MissingDriver(ImportError):
    """No wanted MySQL driver imports; ``package`` and ``advice`` say what to install."""

    def __init__(self, package: str, advice: str, reason: str):
        super().__init__(f"{package}: {advice} ({reason})")
        self.package, self.advice, self.reason = package, advice, reason


class InvalidDriverChoice(ValueError):
    pass


@dataclass(frozen=True)
class ConnectOptions:
    host: str
    port: int
    user: str
    password: str
    database: str
    timeout: float
    use_ssl: bool


def driver_order(requested: str) -> tuple[str, ...]:
    """The drivers to try, best first, for the value of APD_MYSQL_DRIVER."""
    value = requested.strip().lower()
    if not value:
        return AUTOMATIC
    if value in MODULES:
        return (value,)
    raise InvalidDriverChoice(
        f"{DRIVER_ENV}={requested!r} names no MySQL driver: use 'mysqlclient' or 'pymysql', "
        "or leave it unset (mysqlclient when installed, else PyMySQL)"
    )


def lock_wait_command(timeout: float) -> str:
    # Row-lock waits end on the server too, not only in the client (server default: 50 s).
    return f"SET SESSION innodb_lock_wait_timeout = {whole_seconds(timeout)}"


def whole_seconds(timeout: float) -> int:
    """The C client and the server take whole seconds: round up, at least 1."""
    return max(1, math.ceil(timeout))


def unverified_tls() -> ssl.SSLContext:
    """``*_db_use_ssl``: TLS without checking the certificate, as iRedAPD (ssl_verify_cert=False)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class MysqlDriver:
    """One driver module and how to connect with it."""

    name = ""
    module: ModuleType

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def connect(self, options: ConnectOptions) -> Any:
        raise NotImplementedError

    def timed_out(self, exc: BaseException) -> bool:
        """Did this lost-connection error come from our own read/write timeout? (A timeout is
        not retried: the request must get its answer within one.)"""
        return TIMED_OUT in str(exc)


class PyMysqlDriver(MysqlDriver):
    name = "pymysql"

    def __init__(self, module: ModuleType):
        self.module = module

    def connect(self, options: ConnectOptions) -> Any:
        from pymysql.constants import CLIENT

        return self.module.connect(
            host=options.host,
            port=options.port,
            user=options.user,
            password=options.password,
            database=options.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=options.timeout,
            read_timeout=options.timeout,
            write_timeout=options.timeout,
            # rowcount = rows matched, not rows changed, as on PostgreSQL and SQLite
            client_flag=CLIENT.FOUND_ROWS,
            ssl=unverified_tls() if options.use_ssl else None,
            # PyMySQL >= 1.2 tries TLS whenever the server offers it: use_ssl = False means plain, as iRedAPD
            ssl_disabled=not options.use_ssl,
            init_command=lock_wait_command(options.timeout),
        )


class MysqlclientDriver(MysqlDriver):
    name = "mysqlclient"

    def __init__(self, module: ModuleType):
        self.module = module

    def connect(self, options: ConnectOptions) -> Any:
        from MySQLdb.constants import CLIENT

        seconds = whole_seconds(options.timeout)
        started = time.monotonic()
        try:
            return self.module.connect(
                host=options.host,
                port=options.port,
                user=options.user,
                password=options.password,
                database=options.database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=seconds,
                read_timeout=seconds,
                write_timeout=seconds,
                client_flag=CLIENT.FOUND_ROWS,
                # one statement per execute(), as PyMySQL (mysqlclient enables multi-statements by default)
                multi_statements=False,
                # TLS only when asked, never verified (as iRedAPD); DISABLED also stops a client library
                # that would otherwise negotiate TLS by itself
                ssl_mode="REQUIRED" if options.use_ssl else "DISABLED",
                init_command=lock_wait_command(options.timeout),
                cursorclass=timed_cursor(
                    importlib.import_module("MySQLdb.cursors").Cursor, self.module.OperationalError, seconds
                ),
            )
        except self.module.OperationalError as exc:
            marked = mark_timeout(exc, self.module.OperationalError, started, seconds)
            if marked is exc:
                raise
            raise marked from exc


def mark_timeout(exc: Exception, lost: type[Exception], started: float, seconds: int) -> Exception:
    """``exc``, or, for a lost connection that came once ``seconds`` had passed since ``started``,
    the same error saying it timed out (as PyMySQL's do)."""
    if exc.args[:1] == (LOST_DURING_QUERY,) and time.monotonic() - started >= seconds * 0.9:
        return lost(LOST_DURING_QUERY, f"{exc.args[1]} ({TIMED_OUT} after {seconds} s)")
    return exc


@lru_cache(maxsize=8)
def timed_cursor(base: type, lost: type[Exception], seconds: int) -> type:
    """mysqlclient's cursor, marking a lost connection that came after ``seconds`` as timed out.

    libmariadb reports its read timeout (and a connect's) as a plain 2013 "Lost connection to
    server ...", the very error of a connection the server closed, which Database retries once
    on a new connection: a hung server would cost two timeouts. The time taken tells them apart."""

    def timed(run: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, query: Any, args: Any = None) -> Any:
            started = time.monotonic()
            try:
                return run(self, query, args)
            except lost as exc:
                marked = mark_timeout(exc, lost, started, seconds)
                if marked is exc:
                    raise
                raise marked from exc

        return call

    return type("TimedCursor", (base,), {"execute": timed(base.execute), "executemany": timed(base.executemany)})


DRIVER_CLASSES: dict[str, type] = {"mysqlclient": MysqlclientDriver, "pymysql": PyMysqlDriver}


def load_driver(environ: Mapping[str, str] = os.environ) -> MysqlDriver:
    """The first driver of ``driver_order`` that imports. Raises InvalidDriverChoice or MissingDriver."""
    order = driver_order(environ.get(DRIVER_ENV, ""))
    reasons = []
    for name in order:
        try:
            module = importlib.import_module(MODULES[name])
        except ImportError as exc:
            reasons.append(str(exc))
            continue
        return DRIVER_CLASSES[name](module)
    # Automatic: PyMySQL is the one that installs everywhere (a wheel), so name it.
    wanted = order[-1]
    raise MissingDriver(PACKAGE[wanted], INSTALL[wanted], "; ".join(reasons))

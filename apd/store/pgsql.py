"""PostgreSQL backend (psycopg2).

Timeouts: the server aborts long statements (``statement_timeout``), and a client-side
wait callback bounds every network wait by ``SQL_QUERY_TIMEOUT``, so a server that stops
answering (hung host, blackholed port) costs one timeout. libpq's own ``connect_timeout``
cannot do that: it works in whole seconds (minimum 2) and covers only the connect.
"""

from __future__ import annotations

import functools
import select
import time
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from apd.store.base import ServerDialect

# How much longer than statement_timeout the client waits before giving up on the server.
CLIENT_GRACE = 0.25


class NoAnswer(psycopg2.OperationalError):
    """The client-side deadline passed (hung server, blackholed address)."""


class TimedConnection(psycopg2.extensions.connection):
    """A connection that knows how long any one network wait may take.

    The deadline is set before the base class connects, so the connect is bounded too.
    """

    def __init__(self, dsn: str, *args: Any, wait_timeout: float | None = None, **kwargs: Any):
        self.wait_timeout = wait_timeout
        super().__init__(dsn, *args, **kwargs)


def wait_with_deadline(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection until done or until its deadline.

    Installed process-wide (psycopg2 allows only one); connections that are not
    ``TimedConnection``s wait without a deadline, as psycopg2 would by default.
    """
    timeout = getattr(conn, "wait_timeout", None)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise NoAnswer(f"no answer from the server within {timeout:g}s")
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        # poll(), not select(): a busy worker's descriptors may exceed FD_SETSIZE (1024)
        waiter = select.poll()
        waiter.register(conn.fileno(), events)
        waiter.poll(None if remaining is None else max(1, int(remaining * 1000)))


class PgsqlDialect(ServerDialect):
    name = "pgsql"
    case_insensitive_text = False
    # Serialises writers of one key whose table may lack a unique key (iRedAPD's PostgreSQL
    # throttle_tracking has none); released at the end of the transaction.
    advisory_lock_sql = "SELECT pg_advisory_xact_lock(hashtext(%s))"

    def connect(self) -> Any:
        if psycopg2.extensions.get_wait_callback() is not wait_with_deadline:
            psycopg2.extensions.set_wait_callback(wait_with_deadline)
        millis = max(1, int(self.timeout * 1000))
        conn = psycopg2.connect(
            # the server cancels a slow statement first; the client deadline catches a hung server
            connection_factory=functools.partial(TimedConnection, wait_timeout=self.timeout + CLIENT_GRACE),
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            connect_timeout=max(2, int(self.timeout + 0.999)),
            # random_page_cost 1.1 (the SSD value; the server default 4 models disks): apd's
            # statements are key lookups, and with 4 the planner scans small tables whole
            # (1,000 SPF whitelist rows: 0.18 ms instead of 0.03 ms through their index).
            options=f"-c statement_timeout={millis} -c lock_timeout={millis} -c random_page_cost=1.1",
            sslmode="prefer",  # TLS when the server offers it; iRedAPD ignores *_db_use_ssl here
            application_name="apd",
        )
        conn.autocommit = True
        return conn

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (psycopg2.Error,)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, psycopg2.errors.UniqueViolation):
            return "duplicate"
        if isinstance(exc, (NoAnswer, psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable)):
            return "timeout"
        if isinstance(exc, psycopg2.extensions.TransactionRollbackError):
            return "conflict"  # deadlock / serialization failure: the server is fine
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return "unavailable"  # connection lost, refused, timed out, server shutting down
        return "error"

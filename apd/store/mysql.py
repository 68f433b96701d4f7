"""MySQL / MariaDB backend (PyMySQL).

Every socket operation is bounded by ``SQL_QUERY_TIMEOUT`` (connect, read and write
timeouts), so a hung server costs one timeout, after which ``Database`` backs off.
"""

from __future__ import annotations

import math
import re
import ssl
from typing import Any, Sequence

import pymysql
from pymysql.constants import CLIENT

from apd.store.base import ServerDialect

# Client-side error codes (CR_*) and server codes that mean "the connection is gone".
CONNECTION_LOST = frozenset(
    {
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query (also our read timeout)
        2055,  # lost connection at reading packet
        1040,  # too many connections
        1053,  # server shutdown in progress
        1077,  # normal shutdown
        1078,  # got signal
        1079,  # shutdown complete
        1152,  # aborted connection
        1927,  # MariaDB: connection was killed
        4031,  # MySQL 8: disconnected by the server because of inactivity
    }
)
DUPLICATE_ENTRY = 1062
DEADLOCK = 1213

_EXCLUDED = re.compile(r"\bexcluded\.(\w+)", re.IGNORECASE)


def unverified_tls() -> ssl.SSLContext:
    """``*_db_use_ssl``: TLS without checking the certificate, as iRedAPD (ssl_verify_cert=False)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class MysqlDialect(ServerDialect):
    name = "mysql"
    case_insensitive_text = True  # utf8mb4_general_ci columns ignore case
    # MySQL has no INSERT ... RETURNING (MariaDB's cannot be relied on for MySQL servers):
    # callers read the row back in the same transaction instead.
    supports_upsert_returning = False

    def connect(self) -> Any:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            write_timeout=self.timeout,
            # rowcount = rows matched, not rows changed, as on PostgreSQL and SQLite
            client_flag=CLIENT.FOUND_ROWS,
            ssl=unverified_tls() if self.use_ssl else None,
            # PyMySQL >= 1.2 tries TLS whenever the server offers it: use_ssl = False means plain, as iRedAPD
            ssl_disabled=not self.use_ssl,
            # row-lock waits end on the server too, not only in the client (default: 50 s)
            init_command=f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(self.timeout))}",
        )

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (pymysql.err.MySQLError,)

    def classify(self, exc: BaseException) -> str:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if isinstance(exc, pymysql.err.IntegrityError):
            return "duplicate" if code == DUPLICATE_ENTRY else "error"
        if isinstance(exc, pymysql.err.InterfaceError):
            return "unavailable"  # the connection object is closed or broken
        if isinstance(exc, pymysql.err.OperationalError) and code in CONNECTION_LOST:
            return "timeout" if "timed out" in str(exc) else "unavailable"
        if isinstance(exc, pymysql.err.OperationalError) and code in (1205, 1969):
            return "timeout"  # lock wait timeout / MariaDB max_statement_time
        if code == DEADLOCK:
            return "conflict"
        return "error"

    def insert_ignore(self, table: str, columns: Sequence[str], conflict: Sequence[str]) -> str:
        # Not INSERT IGNORE: that would also hide truncation and NULL errors.
        cols = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        first = conflict[0]
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {first} = {first}"

    def upsert(self, table: str, columns: Sequence[str], conflict: Sequence[str], update_sql: str) -> str:
        """Callers write ``update_sql`` once, PostgreSQL-style: ``excluded.col`` becomes
        ``VALUES(col)`` here; a bare column still means the stored row's value."""
        cols = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        update = _EXCLUDED.sub(r"VALUES(\1)", update_sql)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {update}"

"""MySQL / MariaDB backend: mysqlclient (C) when installed, else PyMySQL (apd/store/mysql_driver.py).

Every socket operation is bounded by ``SQL_QUERY_TIMEOUT`` (connect, read and write
timeouts), so a hung server costs one timeout, after which ``Database`` backs off.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from apd.store.base import ServerDialect
from apd.store.mysql_driver import ConnectOptions, MysqlDriver, load_driver

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
LOCK_WAIT_TIMEOUT = 1205
STATEMENT_TIME_EXCEEDED = 1969  # MariaDB max_statement_time

_EXCLUDED = re.compile(r"\bexcluded\.(\w+)", re.IGNORECASE)
_MARIADB_VERSION = re.compile(r"(?:5\.5\.5-)?(\d+)\.(\d+)")


def returns_upserted_row(server_version: str) -> bool:
    """MariaDB >= 10.5: ``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING`` gives the row the
    statement left, inserted or updated. Some servers report ``5.5.5-10.11.6-MariaDB``."""
    if "mariadb" not in server_version.lower():
        return False
    found = _MARIADB_VERSION.match(server_version)
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= (10, 5)


class MysqlDialect(ServerDialect):
    name = "mysql"
    case_insensitive_text = True  # utf8mb4_general_ci columns ignore case
    # MySQL has no INSERT ... RETURNING: callers read the row back in the same transaction
    # instead. Set per server at connect (``prepare_connection``): MariaDB >= 10.5 has it.
    supports_upsert_returning = False

    def __init__(self, *args: Any, driver: MysqlDriver | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.driver = driver or load_driver()

    def connect(self) -> Any:
        return self.driver.connect(
            ConnectOptions(self.host, self.port, self.user, self.password, self.database, self.timeout, self.use_ssl)
        )

    def prepare_connection(self, conn: Any) -> None:
        # One statement instead of BEGIN, upsert, SELECT, COMMIT for greylisting tracking.
        self.supports_upsert_returning = returns_upserted_row(conn.get_server_info())

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (self.driver.module.MySQLError,)

    def classify(self, exc: BaseException) -> str:
        errors = self.driver.module
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if isinstance(exc, errors.IntegrityError):
            return "duplicate" if code == DUPLICATE_ENTRY else "error"
        if isinstance(exc, errors.InterfaceError):
            return "unavailable"  # the connection object is closed or broken
        if isinstance(exc, errors.OperationalError) and code in CONNECTION_LOST:
            return "timeout" if self.driver.timed_out(exc) else "unavailable"
        if isinstance(exc, errors.OperationalError) and code in (LOCK_WAIT_TIMEOUT, STATEMENT_TIME_EXCEEDED):
            return "timeout"
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

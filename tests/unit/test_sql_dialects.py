"""Pure parts of the MySQL/PostgreSQL backends: SQL rewriting, error classification,
init-db planning, the DDL files (column names as in iRedMail/iRedAPD), connection sharing."""

from __future__ import annotations

import re

import psycopg2
import psycopg2.errors
import pymysql
import pytest

from apd.settings import defaults
from apd.store.counters import ADD_SQL, add_params
from apd.store.mysql import MysqlDialect
from apd.store.mysql_driver import DRIVER_CLASSES, INSTALL, MODULES
from apd.store.pgsql import NoAnswer, PgsqlDialect
from apd.store.servers import ddl, ddl_tables, open_databases, plan_tables, table_of
from tests.helpers.servers import require_module
from tests.helpers.shared import shared_schema

PARAMS = dict(host="127.0.0.1", port=3306, user="u", password="secret", database="d", timeout=2.0)
MYSQL = MysqlDialect(**PARAMS)
PGSQL = PgsqlDialect(**PARAMS)


def test_mysql_upsert_translates_excluded_references():
    sql = MYSQL.upsert("t", ("a", "b", "n"), ("a", "b"), "n = t.n + EXCLUDED.n, c = excluded.c_x, d = notexcluded.d")
    assert sql == (
        "INSERT INTO t (a, b, n) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE "
        "n = t.n + VALUES(n), c = VALUES(c_x), d = notexcluded.d"
    )


def test_pgsql_upsert_keeps_excluded():
    sql = PGSQL.upsert("t", ("a", "n"), ("a",), "n = t.n + excluded.n")
    assert sql == "INSERT INTO t (a, n) VALUES (%s, %s) ON CONFLICT (a) DO UPDATE SET n = t.n + excluded.n"


def test_insert_ignore_forms():
    assert MYSQL.insert_ignore("t", ("a", "b"), ("a",)) == (
        "INSERT INTO t (a, b) VALUES (%s, %s) ON DUPLICATE KEY UPDATE a = a"
    )
    assert PGSQL.insert_ignore("t", ("a", "b"), ("a",)) == (
        "INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT (a) DO NOTHING"
    )


def mysql_dialect(driver: str) -> MysqlDialect:
    """A dialect on one driver (its module imported, or the test is unavailable)."""
    module = require_module(MODULES[driver], INSTALL[driver])
    return MysqlDialect(**PARAMS, driver=DRIVER_CLASSES[driver](module))


@pytest.mark.parametrize("driver", ["mysqlclient", "pymysql"])
@pytest.mark.parametrize(
    "error, code, text, kind",
    [
        ("OperationalError", 2003, "Can't connect to MySQL server", "unavailable"),
        ("OperationalError", 2006, "MySQL server has gone away", "unavailable"),
        ("OperationalError", 2013, "Lost connection to MySQL server during query", "unavailable"),
        ("OperationalError", 2013, "Lost connection to MySQL server during query (timed out)", "timeout"),
        ("OperationalError", 1927, "Connection was killed", "unavailable"),
        ("OperationalError", 1205, "Lock wait timeout exceeded", "timeout"),
        ("OperationalError", 1969, "Query execution was interrupted (max_statement_time exceeded)", "timeout"),
        ("OperationalError", 1054, "Unknown column", "error"),
        ("OperationalError", 1213, "Deadlock found when trying to get lock", "conflict"),
        ("InterfaceError", 0, "", "unavailable"),
        ("IntegrityError", 1062, "Duplicate entry", "duplicate"),
        ("IntegrityError", 1452, "foreign key constraint fails", "error"),
        ("ProgrammingError", 1064, "syntax error", "error"),
    ],
)
def test_mysql_classify(driver, error, code, text, kind):
    """The same codes mean the same on both drivers, each raising its own exception classes."""
    dialect = mysql_dialect(driver)
    exc = getattr(dialect.driver.module, error)(code, text)
    assert isinstance(exc, dialect.driver_errors())
    assert dialect.classify(exc) == kind


def test_a_driver_does_not_classify_the_other_drivers_exceptions():
    pymysql_dialect, mysqlclient_dialect = mysql_dialect("pymysql"), mysql_dialect("mysqlclient")
    assert not isinstance(pymysql.err.OperationalError(2006, "gone"), mysqlclient_dialect.driver_errors())
    assert mysqlclient_dialect.driver.module is not pymysql_dialect.driver.module


@pytest.mark.parametrize(
    "exc, kind",
    [
        (psycopg2.OperationalError("could not connect to server"), "unavailable"),
        (psycopg2.errors.AdminShutdown("terminating connection"), "unavailable"),
        (psycopg2.InterfaceError("connection already closed"), "unavailable"),
        (psycopg2.errors.QueryCanceled("statement timeout"), "timeout"),
        (NoAnswer("no answer"), "timeout"),
        (psycopg2.errors.UniqueViolation("duplicate key"), "duplicate"),
        (psycopg2.errors.ForeignKeyViolation("fk"), "error"),
        (psycopg2.errors.DeadlockDetected("deadlock"), "conflict"),
        (psycopg2.errors.SerializationFailure("serialization"), "conflict"),
        (psycopg2.errors.UndefinedColumn("no column"), "error"),
    ],
)
def test_pgsql_classify(exc, kind):
    assert PGSQL.classify(exc) == kind


@pytest.mark.parametrize(
    "db, wanted, existing, expected",
    [
        ("iredapd", ["a", "b", "c"], set(), ["a", "b", "c"]),
        ("iredapd", ["a", "b", "c"], {"b"}, ["a", "c"]),
        ("iredapd", ["a", "b"], {"a", "b", "other"}, []),
        ("vmail", ["a", "b"], set(), ["a", "b"]),
        ("vmail", ["a", "b"], {"other"}, ["a", "b"]),  # unrelated tables: still a fresh vmail
        ("vmail", ["a", "b"], {"a"}, []),  # iRedMail's database: never add to it
        ("amavisd", ["a", "b"], {"b"}, []),
    ],
)
def test_plan_tables(db, wanted, existing, expected):
    assert plan_tables(db, wanted, existing) == expected


@pytest.mark.parametrize(
    "statement, table",
    [
        ("CREATE TABLE IF NOT EXISTS throttle (\n id INT)", "throttle"),
        ("CREATE TABLE `Greylisting` (id INT)", "greylisting"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS idx_x ON greylisting_tracking (sender)", "greylisting_tracking"),
        ("CREATE INDEX idx\n    ON smtp_sessions (time)", "smtp_sessions"),
    ],
)
def test_table_of(statement, table):
    assert table_of(statement) == table


def columns_by_table(script: str) -> dict[str, list[str]]:
    """Column names of each CREATE TABLE in a schema file (comments and keys skipped)."""
    script = re.sub(r"--[^\n]*", "", script)
    tables = {}
    for match in re.finditer(r"CREATE TABLE (?:IF NOT EXISTS )?`?(\w+)`?\s*\((.*?)\n\)", script, re.S | re.I):
        columns = []
        for line in match.group(2).split("\n"):
            word = line.strip().split(" ")[0].strip("`,")
            if word and word.upper() not in ("PRIMARY", "UNIQUE", "INDEX", "KEY", "FOREIGN", "CONSTRAINT", "CHECK"):
                columns.append(word.lower())
        tables[match.group(1).lower()] = columns
    return tables


@pytest.mark.parametrize("db", ["vmail", "amavisd", "iredapd"])
def test_mysql_and_pgsql_ddl_define_the_same_tables(db):
    assert columns_by_table(ddl("mysql", db)) == columns_by_table(ddl("pgsql", db))
    assert list(ddl_tables(ddl("mysql", db))) == list(ddl_tables(ddl("pgsql", db)))


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
@pytest.mark.parametrize("db, source", [("vmail", "iredmail"), ("amavisd", "amavisd"), ("iredapd", "iredapd")])
def test_ddl_columns_match_the_real_schema(kind, db, source):
    folder = shared_schema()
    if folder is None:
        pytest.skip("../shared/iredmail not present")
    real = columns_by_table((folder / f"{source}.{kind}").read_text())
    ours = columns_by_table(ddl(kind, db))
    for table, columns in ours.items():
        assert table in real, table
        if db == "iredapd":
            assert columns == real[table], table  # apd owns this database: exactly iRedAPD's columns
        else:
            assert set(columns) <= set(real[table]), (table, set(columns) - set(real[table]))


def test_identical_databases_share_one_connection():
    settings = defaults().replace(backend="mysql", vmail_db_name="one", amavisd_db_name="one", iredapd_db_name="one")
    settings = settings.replace(vmail_db_user="x", amavisd_db_user="x", iredapd_db_user="x")
    dbs = open_databases(settings, ["vmail", "amavisd", "iredapd"])
    assert dbs["vmail"] is dbs["amavisd"] is dbs["iredapd"]
    distinct = open_databases(defaults().replace(backend="pgsql"), ["vmail", "amavisd", "iredapd"])
    assert len({id(db) for db in distinct.values()}) == 3
    assert "password" not in distinct["vmail"].label
    assert distinct["iredapd"].label == "iredapd (pgsql://iredapd@127.0.0.1:3306/iredapd)"


def test_throttle_add_statement_has_one_parameter_per_placeholder():
    assert ADD_SQL.count("%s") == len(add_params(1, "a", 60, 1, 10, 1000, 5))


def test_ldap_backend_keeps_amavisd_and_iredapd_in_mysql():
    require_module("ldap")
    from apd.store import open_store

    store = open_store(defaults().replace(backend="ldap"))
    assert store.vmail is None
    assert type(store.accounts).__name__ == "LdapAccounts"
    assert store.iredapd.dialect.name == store.amavisd.dialect.name == "mysql"
    assert store.iredapd.label.startswith("iredapd (mysql://")
    store.close()


def test_missing_driver_is_named(monkeypatch):
    import sys

    from apd.errors import StoreError
    from apd.store.servers import make_dialect

    monkeypatch.delitem(sys.modules, "apd.store.mysql")
    monkeypatch.delenv("APD_MYSQL_DRIVER", raising=False)
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as if neither MySQL driver were installed
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    with pytest.raises(StoreError, match=r"need the PyMySQL driver \(pip install 'apd\[mysql\]'\)"):
        make_dialect("mysql", {"host": "h", "port": 1, "user": "u", "password": "p", "database": "d"}, 1.0)

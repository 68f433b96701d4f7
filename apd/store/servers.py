"""Stores on database servers: backend 'mysql', 'pgsql', and 'ldap' (accounts in LDAP).

``open_server_store(settings)`` builds the per-worker Store from the ``{vmail,amavisd,iredapd}_db_*``
settings; nothing connects until first use, so it is safe before fork and while a server
is down. With backend 'ldap' the amavisd and iredapd databases are MySQL, as in iRedMail,
and there is no vmail database.

``init_server_db(settings)`` is ``apd --init-db``: it creates apd's tables from the DDL
under ``ddl/<dialect>/`` where they are missing and never alters an existing table:

* iredapd: every missing table is created (with its indexes);
* vmail, amavisd: tables are created only in an empty database (a fresh setup without
  iRedMail); a database that already holds any of them is left exactly as it is.
"""

from __future__ import annotations

import importlib
import logging
import re
from importlib import resources
from typing import Any, Iterable

from apd.errors import StoreError
from apd.store import Store
from apd.store.base import Database, Dialect, split_statements
from apd.store.mysql_driver import InvalidDriverChoice, MissingDriver, load_driver

log = logging.getLogger(__name__)

DATABASES = ("vmail", "amavisd", "iredapd")
# Databases where init-db only fills an empty database: iRedMail owns their schema.
FOREIGN = frozenset({"vmail", "amavisd"})

_TABLE_OF = (
    re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)", re.IGNORECASE),
    re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\b.*?\bON\s+`?(\w+)", re.IGNORECASE | re.DOTALL),
)
_LIST_TABLES = {
    "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    "pgsql": "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
}


def sql_dialect_name(settings: Any) -> str:
    """The SQL dialect of the amavisd/iredapd (and vmail) databases for this backend."""
    return "pgsql" if settings.backend == "pgsql" else "mysql"


def databases_for(settings: Any) -> tuple[str, ...]:
    return DATABASES[1:] if settings.backend == "ldap" else DATABASES


def connection_params(settings: Any, db: str) -> dict[str, Any]:
    return {
        "host": getattr(settings, f"{db}_db_server"),
        "port": getattr(settings, f"{db}_db_port"),
        "user": getattr(settings, f"{db}_db_user"),
        "password": getattr(settings, f"{db}_db_password"),
        "database": getattr(settings, f"{db}_db_name"),
        "use_ssl": getattr(settings, f"{db}_db_use_ssl"),
    }


DRIVERS = {
    "mysql": ("PyMySQL", "pymysql", "apd.store.mysql", "MysqlDialect"),
    "pgsql": ("psycopg2", "psycopg2", "apd.store.pgsql", "PgsqlDialect"),
}


DRIVER_INSTALL = {
    "PyMySQL": "pip install 'apd[mysql]'",  # or mysqlclient: apd/store/mysql_driver.py
    "psycopg2": "pip install 'apd[pgsql]'",
    "python-ldap": "apt install libldap2-dev libsasl2-dev, then pip install 'apd[ldap]' (or: make venv-ldap)",
}


def check_drivers(settings: Any) -> list[str]:
    """Fail at start-up, with what to install, when this backend's Python modules are missing.

    The workers import them after fork; without this check each would die on start and be
    respawned in a loop. python-ldap is not in the ``make run`` venv: it compiles against
    libldap and libsasl, which a fresh Debian machine does not have. Returns the drivers the
    workers will use (logged once here, at start; printed by ``--check-config``).
    """
    if settings.backend == "sqlite":
        return []  # the standard library's sqlite3
    used: list[str] = []
    needed: list[tuple[str, str]] = []
    if sql_dialect_name(settings) == "mysql":  # mysqlclient or PyMySQL: mysql_driver.load_driver
        used.append(f"MySQL driver: {mysql_driver_label(settings.backend)}")
    else:
        needed.append(DRIVERS["pgsql"][:2])
    if settings.backend == "ldap":
        needed.append(("python-ldap", "ldap"))
    for driver, module_name in needed:
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            raise StoreError(f"backend {settings.backend!r} needs {driver}: {DRIVER_INSTALL[driver]} ({exc})") from exc
    for line in used:
        log.info("%s", line)
    return used


def mysql_driver_label(backend: str) -> str:
    try:
        return load_driver().label
    except InvalidDriverChoice as exc:
        raise StoreError(str(exc)) from exc
    except MissingDriver as exc:
        raise StoreError(f"backend {backend!r} needs {exc.package}: {exc.advice} ({exc.reason})") from exc


def make_dialect(kind: str, params: dict[str, Any], timeout: float) -> Dialect:
    driver, _, module_name, class_name = DRIVERS[kind]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)(timeout=timeout, **params)
    except InvalidDriverChoice as exc:
        raise StoreError(str(exc)) from exc
    except MissingDriver as exc:
        raise StoreError(f"the {kind} databases need the {exc.package} driver ({exc.advice}): {exc.reason}") from exc
    except ImportError as exc:
        raise StoreError(f"the {kind} databases need the {driver} driver ({DRIVER_INSTALL[driver]}): {exc}") from exc


def label(db: str, kind: str, params: dict[str, Any]) -> str:
    """How logs name a database: which one, and where (never the password)."""
    return f"{db} ({kind}://{params['user']}@{params['host']}:{params['port']}/{params['database']})"


def open_databases(settings: Any, names: Iterable[str]) -> dict[str, Database]:
    """One Database per distinct server/port/user/name: two settings naming the same
    database share one connection."""
    kind = sql_dialect_name(settings)
    shared: dict[tuple, Database] = {}
    result: dict[str, Database] = {}
    for db in names:
        params = connection_params(settings, db)
        key = (params["host"], params["port"], params["user"], params["database"])
        if key not in shared:
            shared[key] = Database(label(db, kind, params), make_dialect(kind, params, settings.SQL_QUERY_TIMEOUT))
        result[db] = shared[key]
    return result


def open_server_store(settings: Any) -> Store:
    dbs = open_databases(settings, databases_for(settings))
    if settings.backend == "ldap":
        from apd.store.ldap import LdapAccounts

        accounts: Any = LdapAccounts(settings)
    else:
        from apd.store.accounts import SqlAccounts

        accounts = SqlAccounts(dbs["vmail"])
    return Store(dbs.get("vmail"), dbs["amavisd"], dbs["iredapd"], accounts)


# --- apd --init-db


def ddl(kind: str, db: str) -> str:
    return resources.files("apd.store").joinpath(f"ddl/{kind}/{db}.sql").read_text(encoding="utf-8")


def table_of(statement: str) -> str:
    for pattern in _TABLE_OF:
        match = pattern.match(statement)
        if match:
            return match.group(1).lower()
    raise ValueError(f"DDL statement names no table: {statement[:60]!r}")


def ddl_tables(script: str) -> dict[str, list[str]]:
    """Statements grouped by the table they create or index, in script order."""
    tables: dict[str, list[str]] = {}
    for statement in split_statements(script):
        tables.setdefault(table_of(statement), []).append(statement)
    return tables


def plan_tables(db: str, wanted: Iterable[str], existing: set[str]) -> list[str]:
    """Which of ``wanted`` init-db creates (pure; the rules are in the module docstring)."""
    missing = [t for t in wanted if t not in existing]
    if db in FOREIGN and len(missing) < len(list(wanted)):
        return []
    return missing


def init_database(db: Database, name: str, kind: str) -> str:
    tables = ddl_tables(ddl(kind, name))
    existing = {str(row[0]).lower() for row in db.query(_LIST_TABLES[kind])}
    create = plan_tables(name, tables, existing)
    for table in create:
        for statement in tables[table]:
            db.execute(statement)
    seeded = 0
    if "greylisting_whitelist_domains" in create:  # a new list gets the big senders; an existing one is left alone
        from apd.store.greylisting_whitelists import seed_whitelist_domains

        seeded = seed_whitelist_domains(db)
    kept = [t for t in tables if t in existing]
    missing = [t for t in tables if t not in existing and t not in create]
    parts = []
    if create:
        parts.append(f"created {len(create)} table(s): {', '.join(create)}")
    if kept:
        parts.append(f"kept {len(kept)} existing table(s) unchanged")
    if missing:
        parts.append(f"not created (database managed by iRedMail): {', '.join(missing)}")
    if seeded:
        parts.append(f"greylisting_whitelist_domains: {seeded} default domains added")
    return f"{db.label}: {'; '.join(parts) or 'nothing to do'}"


def init_server_db(settings: Any) -> list[str]:
    kind = sql_dialect_name(settings)
    dbs = open_databases(settings, databases_for(settings))
    report = []
    try:
        for name, db in dbs.items():
            report.append(init_database(db, name, kind))
    finally:
        for db in dbs.values():
            db.close()
    return report

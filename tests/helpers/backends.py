"""Ready-to-use Stores on every SQL backend, for the ``sql_backend`` fixture (tests/conftest.py).

``sql_backend`` is parametrized over 'sqlite', 'mysql' and 'pgsql' and yields a ``Store`` whose
tables are empty (apd's own DDL; vmail, amavisd and iredapd). ``store.settings`` holds the
apd Settings that open it and ``store.backend`` the parameter. A test written once against
it runs on all three backends. For an apd subprocess on a server, use
``mariadb_server.apd_settings()`` / ``postgres_server.apd_settings()`` with ``apd_factory``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SQL_BACKENDS = ("sqlite", "mysql", "pgsql")
# (backend, schema set): apd's own DDL, and the real iRedMail schemas on the servers.
SCHEMA_CASES = [("sqlite", "apd"), ("mysql", "apd"), ("mysql", "iredmail"), ("pgsql", "apd"), ("pgsql", "iredmail")]


def sqlite_settings(tmp_path: Path, **overrides: Any) -> Any:
    from apd.settings import defaults

    return defaults().replace(backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"), **overrides)


def open_fresh_store(kind: str, settings: Any, server: Any = None, schema: str = "apd") -> Any:
    """Empty the tables (server backends) or create them (SQLite) and open a Store."""
    from apd.store import init_db, open_store

    if server is not None:
        server.truncate(schema)
    else:
        init_db(settings)
    store = open_store(settings)
    store.settings = settings
    store.backend = kind
    return store


def fresh_store(request: Any, tmp_path: Path, kind: str, schema: str = "apd") -> Any:
    """``open_fresh_store`` for a fixture: SQLite in ``tmp_path``, else the session's server of
    that kind (skipped when its ``schema`` set is not loaded)."""
    if kind == "sqlite":
        return open_fresh_store(kind, sqlite_settings(tmp_path))
    server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
    server.require_schema(schema)
    return open_fresh_store(kind, server.settings(schema), server, schema)

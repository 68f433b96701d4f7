"""Greylisting tests on every SQL backend: settings for an apd subprocess or a tool, plus a Store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apd.settings import defaults
from apd.store import open_store, sqlite
from tests.helpers.apd_process import settings_text
from tests.helpers.servers import unavailable

BACKENDS = ("sqlite", "mysql", "pgsql")
# The same servers with the real iRedMail/iRedAPD schemas (../shared/iredmail) instead of apd's DDL.
IREDMAIL_BACKENDS = ("mysql:iredmail", "pgsql:iredmail")


class Backend:
    """``values``: settings (dict) that reach this backend's databases; ``store``: a Store on them."""

    def __init__(self, kind: str, values: dict[str, Any], tmp_path: Path):
        self.kind = kind
        self.values = values
        self.settings = defaults().replace(**values)
        self.store = open_store(self.settings)
        self.db = self.store.iredapd
        self.settings_file = tmp_path / "tool-settings.py"
        self.settings_file.write_text(settings_text(dict(values, log_level="info")))

    def close(self) -> None:
        self.store.close()


def open_backend(request: Any, tmp_path: Path, kind: str | None = None) -> Backend:
    """The backend named by ``kind`` (default: the fixture parameter); a missing server fixture is unavailable()."""
    kind = kind or request.param
    kind, _, schema = kind.partition(":")
    schema = schema or "apd"
    if kind == "sqlite":
        values: dict[str, Any] = {"backend": "sqlite", "sqlite_db_path": str(tmp_path / "apd.sqlite3")}
        backend = Backend(kind, values, tmp_path)
        sqlite.initialise(backend.db)
        backend.db.execute("DELETE FROM greylisting_whitelist_domains")  # the seeded defaults
        return backend
    try:
        server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
    except pytest.FixtureLookupError:
        unavailable(f"the {kind} server fixture is not available in this tree")
    server.truncate(schema)
    return Backend(kind, server.apd_settings(schema), tmp_path)

"""Run a MariaDB test on each MySQL driver apd supports (apd/store/mysql_driver.py).

apd picks mysqlclient when it imports, so most tests run on it; the connection-level and store
contract tests also run on PyMySQL, the fallback, by forcing ``APD_MYSQL_DRIVER`` (read when a
store opens, and inherited by apd subprocesses). Under CI=true a driver that is not installed
fails the test instead of skipping it.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from apd.store.mysql_driver import DRIVER_ENV, INSTALL, MODULES
from tests.helpers.servers import require_module

MYSQL_DRIVERS = ("mysqlclient", "pymysql")


def use_mysql_driver(monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    require_module(MODULES[driver], INSTALL[driver])
    monkeypatch.setenv(DRIVER_ENV, driver)


def driver_schema_cases() -> list[tuple[str, str, str]]:
    """``SCHEMA_CASES`` (backend, schema) with each MariaDB case once per driver ('' elsewhere)."""
    from tests.helpers.backends import SCHEMA_CASES

    return [
        (kind, schema, driver)
        for kind, schema in SCHEMA_CASES
        for driver in (MYSQL_DRIVERS if kind == "mysql" else ("",))
    ]


def case_id(case: tuple[str, str, str]) -> str:
    return "-".join(part for part in case if part)


def driver_store(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``schema_store`` fixture's Store, on the case's MySQL driver (for a fixture: yield from)."""
    from tests.helpers.backends import fresh_store

    kind, schema, driver = request.param
    if driver:
        use_mysql_driver(monkeypatch, driver)
    store = fresh_store(request, tmp_path, kind, schema)
    yield store
    store.close()

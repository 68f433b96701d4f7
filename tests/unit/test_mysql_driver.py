"""The MySQL driver choice: mysqlclient (C) when it imports, else PyMySQL; APD_MYSQL_DRIVER forces one;
`--check-config` names the one the workers will use."""

from __future__ import annotations

import sys
import time

import pymysql
import pytest

from apd import cli
from apd.errors import StoreError
from apd.settings import parse
from apd.store.mysql_driver import (
    DRIVER_ENV,
    InvalidDriverChoice,
    MissingDriver,
    driver_order,
    load_driver,
    lock_wait_command,
    mark_timeout,
    whole_seconds,
)
from apd.store.servers import check_drivers
from tests.helpers.servers import require_module


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    ("value", "order"),
    [
        ("", ("mysqlclient", "pymysql")),
        ("  ", ("mysqlclient", "pymysql")),
        ("pymysql", ("pymysql",)),
        ("PyMySQL", ("pymysql",)),
        ("mysqlclient", ("mysqlclient",)),
    ],
)
def test_driver_order(value: str, order: tuple[str, ...]) -> None:
    assert driver_order(value) == order


def test_an_unknown_driver_is_refused_with_the_choices() -> None:
    with pytest.raises(
        InvalidDriverChoice, match=r"APD_MYSQL_DRIVER='MySQLdb2' names no MySQL driver: use 'mysqlclient'"
    ):
        driver_order("MySQLdb2")


@pytest.mark.parametrize(("timeout", "seconds"), [(5.0, 5), (0.2, 1), (1.5, 2), (30, 30)])
def test_timeouts_are_whole_seconds_rounded_up(timeout: float, seconds: int) -> None:
    assert whole_seconds(timeout) == seconds
    assert lock_wait_command(timeout) == f"SET SESSION innodb_lock_wait_timeout = {seconds}"


def test_automatic_prefers_the_c_driver() -> None:
    require_module("MySQLdb", "make venv-mysql-c")
    assert load_driver({}).name == "mysqlclient"
    assert load_driver({DRIVER_ENV: "pymysql"}).name == "pymysql"


def test_automatic_falls_back_to_pymysql(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "MySQLdb")
    driver = load_driver({})
    assert driver.name == "pymysql" and driver.label == "PyMySQL (pure Python)"


def test_a_forced_driver_that_is_missing_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "MySQLdb")
    with pytest.raises(MissingDriver) as caught:
        load_driver({DRIVER_ENV: "mysqlclient"})
    assert caught.value.package == "mysqlclient"
    assert "libmariadb-dev pkg-config" in caught.value.advice


def test_check_drivers_reports_the_driver_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRIVER_ENV, "pymysql")
    assert check_drivers(parse("backend = 'mysql'\n")) == ["MySQL driver: PyMySQL (pure Python)"]
    assert check_drivers(parse("backend = 'pgsql'\n")) == []


def test_check_drivers_refuses_an_invalid_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRIVER_ENV, "odbc")
    with pytest.raises(StoreError, match="APD_MYSQL_DRIVER='odbc' names no MySQL driver"):
        check_drivers(parse("backend = 'ldap'\n"))


def test_check_config_names_the_mysql_driver(monkeypatch, tmp_path, capsys) -> None:
    require_module("MySQLdb", "make venv-mysql-c")
    monkeypatch.delenv(DRIVER_ENV, raising=False)
    path = tmp_path / "settings.py"
    path.write_text("backend = 'mysql'\n")
    assert cli.main(["--check-config", "-c", str(path)]) == 0
    assert "apd: MySQL driver: mysqlclient (C)" in capsys.readouterr().out


def test_check_config_fails_on_a_forced_driver_that_is_missing(monkeypatch, tmp_path, capsys) -> None:
    hide_module(monkeypatch, "MySQLdb")
    monkeypatch.setenv(DRIVER_ENV, "mysqlclient")
    path = tmp_path / "settings.py"
    path.write_text("backend = 'mysql'\n")
    assert cli.main(["--check-config", "-c", str(path)]) == 1
    assert "apd: error: backend 'mysql' needs mysqlclient: apt install libmariadb-dev" in capsys.readouterr().err


def test_a_lost_connection_after_the_timeout_is_marked_timed_out() -> None:
    """libmariadb says only 'Lost connection' when its read timeout fires: the time taken tells."""
    lost = pymysql.err.OperationalError
    exc = lost(2013, "Lost connection to server during query")
    marked = mark_timeout(exc, lost, time.monotonic() - 1.0, 1)
    assert marked.args == (2013, "Lost connection to server during query (timed out after 1 s)")
    assert mark_timeout(exc, lost, time.monotonic(), 1) is exc  # at once: the server closed it
    gone = lost(2006, "Server has gone away")
    assert mark_timeout(gone, lost, time.monotonic() - 5.0, 1) is gone

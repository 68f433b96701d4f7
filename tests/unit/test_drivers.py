"""A backend whose Python driver is missing stops start-up with what to install, not a worker crash loop;
and `make run` installs nothing that needs a compiler or a Debian package (python-ldap does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apd import cli
from apd.errors import StoreError
from apd.settings import parse
from apd.store.servers import check_drivers
from tests.helpers.apd_process import free_port
from tests.helpers.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``import name`` fail as it does where the package is not installed."""
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, name, None)


def test_ldap_backend_without_python_ldap_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "ldap")
    with pytest.raises(StoreError) as caught:
        check_drivers(parse("backend = 'ldap'\n"))
    message = str(caught.value)
    assert "backend 'ldap' needs python-ldap" in message
    assert "libldap2-dev libsasl2-dev" in message


@pytest.mark.parametrize(
    ("backend", "modules", "driver"),
    [("mysql", ("pymysql", "MySQLdb"), "PyMySQL"), ("pgsql", ("psycopg2",), "psycopg2")],
)
def test_sql_backend_without_its_driver(
    monkeypatch: pytest.MonkeyPatch, backend: str, modules: tuple[str, ...], driver: str
) -> None:
    monkeypatch.delenv("APD_MYSQL_DRIVER", raising=False)
    for module in modules:  # MySQL: neither mysqlclient nor the PyMySQL fallback
        hide_module(monkeypatch, module)
    with pytest.raises(StoreError, match=f"backend '{backend}' needs {driver}: pip install 'apd\\[{backend}\\]'"):
        check_drivers(parse(f"backend = '{backend}'\n"))


def test_ldap_backend_also_needs_the_mysql_driver_of_its_sql_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APD_MYSQL_DRIVER", raising=False)
    hide_module(monkeypatch, "pymysql")
    hide_module(monkeypatch, "MySQLdb")
    with pytest.raises(StoreError, match="needs PyMySQL"):
        check_drivers(parse("backend = 'ldap'\n"))


@pytest.mark.parametrize("backend", ["mysql", "pgsql", "ldap"])
def test_installed_drivers_pass(backend: str) -> None:
    check_drivers(parse(f"backend = '{backend}'\n"))  # the test venv has them all


def test_check_config_fails_on_a_missing_driver(monkeypatch, tmp_path, capsys) -> None:
    hide_module(monkeypatch, "ldap")
    path = tmp_path / "settings.py"
    path.write_text("backend = 'ldap'\n")
    assert cli.main(["--check-config", "-c", str(path)]) == 1
    assert "apd: error: backend 'ldap' needs python-ldap" in capsys.readouterr().err


def test_start_fails_on_a_missing_driver_before_any_worker(monkeypatch, tmp_path, capsys) -> None:
    hide_module(monkeypatch, "ldap")
    path = tmp_path / "settings.py"
    path.write_text(f"backend = 'ldap'\nlisten_address = '127.0.0.1'\nlisten_port = {free_port('127.0.0.1')}\n")
    assert cli.main(["-c", str(path), "--log-to", "stderr"]) == 1
    assert "cannot start: backend 'ldap' needs python-ldap" in capsys.readouterr().err


def test_make_run_installs_no_package_that_compiles(tmp_path: Path) -> None:
    """A fresh Debian machine has no libldap2-dev: python-ldap (which compiles) stays out of `make run`."""
    require_binary("make")
    plan = subprocess.run(
        ["make", "-n", "run", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    extras = [line.split("[", 1)[1].split("]")[0] for line in plan.splitlines() if "pip install -q -e" in line]
    assert extras == ["mysql,pgsql"], plan
    dev_plan = subprocess.run(
        ["make", "-n", "test", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert any("pip install" in line and "[ldap]" in line for line in dev_plan.splitlines()), dev_plan
    # the tests run the MariaDB tests on mysqlclient too, which compiles: `make test` builds it, `make run` not
    assert any("pip install" in line and "[mysql-c]" in line for line in dev_plan.splitlines()), dev_plan


@pytest.mark.parametrize(("extras", "c_driver"), [("mysql,pgsql", True), ("pgsql", False)])
def test_make_install_tries_the_c_mysql_driver_with_mysql(tmp_path: Path, extras: str, c_driver: bool) -> None:
    """The wheels first; then mysqlclient, whose failed build (no libmariadb-dev) only says so."""
    require_binary("make")
    plan = subprocess.run(
        ["make", "-n", "install", f"EXTRAS={extras}", f"PREFIX={tmp_path / 'apd'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"pip install -q '.[{extras}]'" in plan, plan
    c_lines = [line for line in plan.splitlines() if "'.[mysql-c]'" in line]
    assert bool(c_lines) == c_driver, plan
    assert all("|| echo" in line and "apd uses PyMySQL" in line for line in c_lines), plan

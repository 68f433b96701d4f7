"""`make install` on this machine, into a temporary tree: the installed apd runs from its own venv,
its commands and units point at it, the sample settings become a valid settings file, and the
installed daemon answers Postfix. (Debian's pip refuses to install into the system python.)"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.apd_process import ROOT, free_port, settings_text
from tests.helpers.policy_client import PolicyClient, rcpt, wait_for_port
from tests.helpers.servers import require_binary

DIRS = {"PREFIX": "opt", "BINDIR": "bin", "ETCDIR": "etc", "UNITDIR": "units"}
COMMANDS = [
    "apd",
    "apd-wblist-admin",
    "apd-greylisting-admin",
    "apd-throttle-admin",
    "apd-cleanup-db",
    "apd-spf-to-greylist-whitelists",
    "apd-senderscore-admin",
    "apd-migrate-cluebringer-greylisting",
    "apd-migrate-cluebringer-throttle",
    "apd-fix-throttle-priority",
]


@pytest.fixture(autouse=True)
def make_available() -> None:
    require_binary("make")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("install")
    done = make_install(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    return tree


def make_install(tree: Path) -> subprocess.CompletedProcess:
    dirs = [f"{name}={tree / sub}" for name, sub in DIRS.items()]
    # APD_USER= : no system account from a test
    return subprocess.run(
        ["make", "-s", "install", *dirs, "APD_USER="], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_commands_are_linked_to_the_installed_venv(installed: Path) -> None:
    for command in COMMANDS:
        link = installed / "bin" / command
        assert link.is_symlink() and os.readlink(link) == str(installed / "opt" / "bin" / command)
    shown = subprocess.run([installed / "bin" / "apd-wblist-admin", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--add" in shown.stdout


def test_installed_package_is_not_the_checkout(installed: Path) -> None:
    found = subprocess.run(
        [installed / "opt" / "bin" / "python", "-c", "import apd; print(apd.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed,
        env={"PATH": os.environ["PATH"]},
    )
    assert found.stdout.startswith(str(installed / "opt")), found.stdout + found.stderr


def test_sample_settings_installed_and_valid_and_kept_on_reinstall(installed: Path) -> None:
    settings = installed / "etc" / "settings.py"
    assert settings.read_text() == (ROOT / "conf" / "settings.py.sample").read_text()
    assert settings.stat().st_mode & 0o777 == 0o640  # may hold database passwords
    checked = subprocess.run(
        [installed / "bin" / "apd", "--check-config", "-c", settings], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "settings OK" in checked.stdout, checked.stderr
    settings.write_text("listen_port = 7788\n")
    again = make_install(installed)
    assert again.returncode == 0, again.stderr
    assert settings.read_text() == "listen_port = 7788\n"  # an admin's file is never overwritten


def test_units_run_the_installed_commands(installed: Path) -> None:
    units = {path.name: path.read_text() for path in (installed / "units").iterdir()}
    assert set(units) == {path.name for path in (ROOT / "systemd").iterdir() if path.suffix in (".service", ".timer")}
    assert (
        f"ExecStart={installed / 'bin' / 'apd'} --log-to syslog -c {installed / 'etc' / 'settings.py'}"
        in units["apd.service"]
    )
    assert f"ExecStart={installed / 'bin' / 'apd-cleanup-db'}" in units["apd-cleanup.service"]
    assert "/usr/local/bin" not in "".join(units.values())


def test_installed_daemon_answers(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    os.chmod(tmp_path, 0o755)
    settings = tmp_path / "settings.py"
    settings.write_text(
        settings_text(
            {
                "listen_port": port,
                "workers": 1,
                "sqlite_db_path": str(tmp_path / "apd.sqlite3"),
                "run_as_user": pwd.getpwuid(os.getuid()).pw_name,  # the temp dir is not for others
                "plugins": ["reject_null_sender"],
            }
        )
    )
    proc = subprocess.Popen(
        [installed / "bin" / "apd", "-c", settings, "--log-to", "stderr"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port("127.0.0.1", port)
        with PolicyClient("127.0.0.1", port) as client:
            assert client.ask(**rcpt(sasl_username="u@example.com", sender="")).startswith("REJECT")
            assert client.ask(**rcpt()) == "DUNNO"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_uninstall_keeps_the_settings_and_foreign_commands(tmp_path: Path) -> None:
    assert make_install(tmp_path).returncode == 0
    (tmp_path / "bin" / "other").symlink_to("/bin/true")  # not apd's: stays
    (tmp_path / "bin" / "apd-cleanup-db").unlink()
    (tmp_path / "bin" / "apd-cleanup-db").symlink_to("/bin/true")  # replaced by the admin: stays
    dirs = [f"{name}={tmp_path / sub}" for name, sub in DIRS.items()]
    done = subprocess.run(["make", "-s", "uninstall", *dirs, "APD_USER="], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "opt").exists()
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["apd-cleanup-db", "other"]
    assert list((tmp_path / "units").iterdir()) == []
    assert (tmp_path / "etc" / "settings.py").exists()


def foreign_tree(tmp_path: Path) -> Path:
    """A folder with a bin/apd but no venv (like /usr after a system-wide pip install)."""
    tree = tmp_path / "foreign"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "apd").write_text("#!/bin/sh\n")
    (tree / "data").write_text("keep me\n")
    return tree


@pytest.mark.parametrize("prefix", ["", "/", "//", "foreign"])
def test_uninstall_refuses_a_prefix_that_is_not_an_apd_venv(tmp_path: Path, prefix: str) -> None:
    if prefix == "foreign":
        prefix = str(foreign_tree(tmp_path))
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "units").mkdir()
    (tmp_path / "bin" / "apd").symlink_to(f"{prefix}/bin/apd")  # what make install would have linked
    (tmp_path / "units" / "apd.service").write_text("[Service]\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    dirs = [f"BINDIR={tmp_path / 'bin'}", f"UNITDIR={tmp_path / 'units'}", f"ETCDIR={tmp_path / 'etc'}"]
    done = subprocess.run(
        ["make", "-s", "uninstall", f"PREFIX={prefix}", *dirs, "APD_USER="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"make uninstall: refusing PREFIX='{prefix}'" in done.stderr, done.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing removed, not even the units

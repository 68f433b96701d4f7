"""Started as root, apd drops to run_as_user: what that account needs afterwards is imported
beforehand (issue 9.6), unreadable files are named at start with the fix, and the SQLite folder is
the account's or start-up is refused, --check-config trying a write as the account (issue 9.7)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from apd.errors import StoreError
from apd.master import prepare_store
from apd.preload import NeededLater, needed_later, unreadable_warning, unreadable_warnings
from apd.privileges import ask_as, why_unreadable
from apd.settings import defaults
from tests.helpers.apd_process import ROOT, free_port, settings_text
from tests.helpers.servers import unavailable

STATE = "/var/lib/apd"


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        unavailable("needs root: the test becomes the account nobody")
    return pwd.getpwnam("nobody")


@pytest.fixture
def scratch():
    """A folder under /tmp that nobody may enter (pytest's tmp_path is root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="apd-privileges-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def sqlite_settings(path: Path, **more):
    return defaults().replace(backend="sqlite", sqlite_db_path=str(path), run_as_user="nobody", **more)


def not_writable_message(folder: Path, mode: str = "0755") -> str:
    return (
        f"sqlite_db_path's folder {folder} is not writable by nobody (cannot write in it: mode {mode}, owner"
        f" root:root; SQLite creates apd.sqlite3-wal and -shm there): use a folder of its own such as {STATE},"
        f" or chown nobody {folder}"
    )


# --- the SQLite folder (issue 9.7)


def test_sqlite_in_a_shared_root_folder_refuses_to_start(nobody, scratch) -> None:
    shared = scratch / "shared"
    shared.mkdir()
    (shared / "other.txt").write_text("not apd's")
    with pytest.raises(StoreError) as raised:
        prepare_store(sqlite_settings(shared / "apd.sqlite3"))
    assert str(raised.value) == not_writable_message(shared)
    assert shared.stat().st_uid == 0  # not given away


@pytest.mark.parametrize("made_by_apd", [True, False])
def test_sqlite_in_a_folder_of_its_own_becomes_the_accounts(nobody, scratch, made_by_apd: bool) -> None:
    own = scratch / "apd-state"
    if not made_by_apd:
        own.mkdir()  # made by the admin, still empty
    db = own / "apd.sqlite3"
    prepare_store(sqlite_settings(db))
    assert own.stat().st_uid == db.stat().st_uid == nobody.pw_uid
    assert ask_as(nobody, lambda: str(os.access(own, os.W_OK))) == "True"


def test_sqlite_folder_the_account_may_write_is_used_as_it_is(nobody, scratch) -> None:
    shared = scratch / "shared"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)  # e.g. group-writable or world-writable: the account writes already
    (shared / "other.txt").write_text("not apd's")
    prepare_store(sqlite_settings(shared / "apd.sqlite3"))
    assert shared.stat().st_uid == 0


def test_sqlite_beyond_a_closed_folder_names_it(nobody, scratch) -> None:
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0o700)
    with pytest.raises(StoreError) as raised:
        prepare_store(sqlite_settings(closed / "state" / "apd.sqlite3"))
    assert str(raised.value) == (
        f"sqlite_db_path {closed}/state/apd.sqlite3 is out of reach of nobody (cannot enter {closed}: mode 0700,"
        f" owner root:root): use a folder of its own such as {STATE}, or chmod o+x {closed}"
    )


def run_apd(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(config), "--log-to", "stderr", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_check_config_tries_a_write_as_the_account_and_start_refuses(nobody, scratch) -> None:
    """The issue: only the file went to run_as_user, --check-config said OK, every request DUNNO."""
    shared = scratch / "shared"
    shared.mkdir()
    (shared / "other.txt").write_text("not apd's")
    config = scratch / "settings.py"
    settings = {"listen_port": free_port(), "run_as_user": "nobody", "sqlite_db_path": str(shared / "apd.sqlite3")}
    config.write_text(settings_text(settings))
    checked = run_apd("--check-config", config=config)
    assert checked.returncode == 1, checked
    assert f"apd: error: cannot use the SQLite store: {not_writable_message(shared)}\n" in checked.stderr
    started = run_apd(config=config)
    assert started.returncode == 1, started
    assert f"ERROR cannot start: {not_writable_message(shared)}\n" in started.stderr
    assert "Traceback" not in started.stderr
    own = scratch / "own"
    config.write_text(settings_text({**settings, "sqlite_db_path": str(own / "apd.sqlite3")}))
    checked = run_apd("--check-config", config=config)
    assert checked.returncode == 0, checked
    assert own.stat().st_uid == nobody.pw_uid  # prepared as at start


def test_check_config_as_an_ordinary_user_tries_the_write_itself(scratch) -> None:
    """Not root: the same check in this process (a database file in a folder it may not write)."""
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    else:
        prefix = []
    folder = scratch / "readonly"
    folder.mkdir()
    config = scratch / "settings.py"
    config.write_text(settings_text({"listen_port": free_port(), "sqlite_db_path": str(folder / "apd.sqlite3")}))
    os.chmod(folder, 0o555)
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "apd", "-c", str(config), "--check-config"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1, result
    assert "apd: error:" in result.stderr and f"{folder}" in result.stderr and "Traceback" not in result.stderr


# --- asking the account, and what it must still read (issue 9.6)


def test_ask_as_answers_as_the_account_without_root_groups(nobody) -> None:
    answer = ask_as(nobody, lambda: f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getgroups()}")
    assert answer == f"{nobody.pw_uid} {nobody.pw_uid} {nobody.pw_gid} []"
    assert ask_as(None, lambda: str(os.getuid())) == str(os.getuid())


def test_files_the_account_cannot_read_are_named_with_the_fix(nobody, scratch) -> None:
    private = scratch / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    (private / "settings.py").write_text("")
    closed_file = scratch / "settings.py"
    closed_file.write_text("")
    os.chmod(closed_file, 0o600)
    open_file = scratch / "open.py"
    open_file.write_text("")
    closed_folder = scratch / "checks"
    closed_folder.mkdir(mode=0o700)
    os.chmod(closed_folder, 0o700)
    needed = [
        NeededLater(str(private / "settings.py"), "the settings file, re-read on reload (SIGHUP)"),
        NeededLater(str(closed_file), "the settings file, re-read on reload (SIGHUP)"),
        NeededLater(str(open_file), "custom check custom_open, re-read on reload (SIGHUP)"),
        NeededLater(str(closed_folder), "CUSTOM_CHECKS_DIR, re-read on reload (SIGHUP)"),
    ]
    assert unreadable_warnings(nobody, needed) == [
        f"run_as_user nobody cannot read the settings file, re-read on reload (SIGHUP): {private}/settings.py"
        f" (cannot enter {private}: mode 0700, owner root:root); make {private} enterable by nobody"
        f" (chmod o+x {private}), or move {private}/settings.py out of it",
        f"run_as_user nobody cannot read the settings file, re-read on reload (SIGHUP): {closed_file}"
        f" (cannot read it: mode 0600, owner root:root); make it readable by nobody"
        f" (chgrp nogroup {closed_file} && chmod g+r {closed_file})",
        f"run_as_user nobody cannot read CUSTOM_CHECKS_DIR, re-read on reload (SIGHUP): {closed_folder}"
        f" (cannot read it: mode 0700, owner root:root); make the folder readable by nobody"
        f" (chmod o+rx {closed_folder})",
    ]


def test_what_the_account_reads_later() -> None:
    settings = defaults().replace(CUSTOM_CHECKS_DIR="/srv/checks", plugins=["greylisting", "custom_x"])
    assert [(n.path, n.what.split(",")[0]) for n in needed_later(settings, "/etc/apd/settings.py")] == [
        ("/etc/apd/settings.py", "the settings file"),
        ("/srv/checks", "CUSTOM_CHECKS_DIR"),
        ("/srv/checks/custom_x.py", "custom check custom_x"),
        (os.path.dirname(os.__file__), "Python's standard library"),
    ]
    assert [n.path for n in needed_later(defaults(), None)] == [os.path.dirname(os.__file__)]


def test_an_unreadable_standard_library_suggests_the_system_python() -> None:
    item = NeededLater("/root/.pyenv/versions/3.12.0/lib/python3.12", "Python's standard library, imported from")
    text = unreadable_warning("apd", "apd", item, "/root", "cannot enter /root: mode 0700, owner root:root")
    assert text.endswith("or run apd on a Python outside private folders (/usr/bin/python3: make clean && make run)")


def test_why_unreadable_as_this_process(tmp_path) -> None:
    readable = tmp_path / "f"
    readable.write_text("x")
    assert why_unreadable(str(readable)) == ("", "")
    assert why_unreadable(str(tmp_path / "missing")) == ("", "")


def test_preload_imports_what_workers_import_lazily() -> None:
    """In a fresh interpreter: the store modules, apd.spf, dnspython's record types and resolver."""
    code = (
        "import sys; from apd.preload import preload_modules; failed = preload_modules(); "
        "wanted = ['apd.store.accounts', 'apd.store.greylisting', 'apd.store.sessions', 'apd.spf', "
        "'apd.checks.greylisting', 'apd.compat', 'dns.resolver', 'dns.nameserver', 'dns.rdtypes.ANY.TXT', "
        "'dns.rdtypes.ANY.MX', 'dns.rdtypes.IN.A', 'dns.rdtypes.IN.AAAA', 'dns.rdtypes.ANY.PTR', "
        "'dns.rdtypes.ANY.SOA', 'pymysql.connections', 'psycopg2.extensions']; "
        "print([m for m in wanted if m not in sys.modules]); print('apd.__main__' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.splitlines() == ["[]", "False"], result

"""The README's first command from a fresh clone: ``make run`` answers policy requests when run
as root from a clone inside a private folder (root's home, mode 0700; apd drops to nobody, who
cannot read the clone), and as an ordinary user from a clone in their home (issue 9.6).

Each case clones the committed HEAD, builds its venv (pip, from the local wheel cache) and runs
``make run`` with a settings file given by ``CONFIG=``. Greylisting with the SPF bypass through
the test DNS server makes the workers parse DNS answers and write to SQLite as the account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from apd import replies
from apd.store import sqlite
from tests.helpers.apd_process import ROOT, free_port, settings_text
from tests.helpers.policy_client import PolicyClient, rcpt, wait_for_port
from tests.helpers.servers import require_binary, unavailable

GREY = "451 4.7.1 Intentional policy rejection, please try again later"
GLOBAL_GREYLISTING = (
    "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
)
VENV_BUILD_SECONDS = 120  # measured ~15 s with pip's local wheels


@pytest.fixture
def scratch():
    """A folder under /tmp that other accounts may enter (pytest's tmp_path is root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="apd-make-run-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def clone(into: Path) -> Path:
    require_binary("git")
    require_binary("make")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True, timeout=60)
    return into


def seeded_database(path: Path) -> None:
    """apd's tables with greylisting on for everyone (the account's tools would do this)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite.open_database(str(path), 5.0)
    sqlite.initialise(db)
    db.execute(GLOBAL_GREYLISTING)
    db.close()
    sqlite3.connect(str(path)).close()  # no -wal/-shm of root's left behind


def settings_for(port: int, dns_server, **more) -> str:
    return settings_text(
        {
            "listen_port": port,
            "workers": 2,
            "plugins": ["reject_null_sender", "greylisting"],
            "GREYLISTING_BYPASS_SPF": True,
            "DNS_NAMESERVERS": [dns_server.nameserver],
            **more,
        }
    )


def run_make(clone_dir: Path, config: Path, port: int, output: Path, prefix: tuple[str, ...] = (), **env: str):
    """``make run CONFIG=...`` in its own process group; returns (process, seconds until it listens)."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "XDG_STATE_HOME", "APD_SETTINGS")
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    environment.update(env)
    started = time.monotonic()
    with open(output, "wb") as log:
        proc = subprocess.Popen(
            [*prefix, "make", "-C", str(clone_dir), "run", f"CONFIG={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    try:
        wait_for_port("127.0.0.1", port, timeout=VENV_BUILD_SECONDS)
    except TimeoutError:
        stop(proc)
        raise AssertionError(f"make run did not listen within {VENV_BUILD_SECONDS} s:\n{output.read_text()}") from None
    return proc, time.monotonic() - started


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of make and apd (all started by this test)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def assert_answers(port: int) -> None:
    with PolicyClient("127.0.0.1", port, timeout=20) as client:
        client.send_raw(b"\n")  # the port is bound before the workers run: wait for one
        client.read_reply()
        assert client.ask(**rcpt(sender="", sasl_username="u@example.com")) == replies.REJECT_NULL_SENDER
        # SPF via mx: TXT, MX and A answers parsed (dnspython's record types) -> greylisting bypassed
        assert client.ask(**rcpt(sender="a@mx.spf.test", client_address="192.0.2.30")) == "DUNNO"
        # a new triplet: greylisted, its tracking row written to SQLite
        assert client.ask(**rcpt(sender="a@ip4.spf.test", client_address="192.0.2.45")) == GREY


def test_make_run_as_root_from_a_clone_in_a_private_folder(scratch, dns_server) -> None:
    if os.geteuid() != 0:
        unavailable("needs root: make run as root drops to nobody, who cannot read the clone")
    private = scratch / "root-home"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    clone_dir = clone(private / "apd")
    state = scratch / "state" / "apd.sqlite3"  # outside the private folder: nobody writes it
    seeded_database(state)
    port = free_port()
    config = private / "settings.py"  # nobody cannot read it: a warning at start, with the fix
    config.write_text(settings_for(port, dns_server, run_as_user="nobody", sqlite_db_path=str(state)))
    output = scratch / "make-run.log"
    proc, seconds = run_make(clone_dir, config, port, output)
    try:
        assert_answers(port)
    finally:
        stop(proc)
    log = output.read_text(errors="replace")
    print(f"make run as root: listening after {seconds:.1f} s (venv build included)")
    assert "Traceback" not in log and "ModuleNotFoundError" not in log, log
    assert (
        f"WARNING run_as_user nobody cannot read the settings file, re-read on reload (SIGHUP): {config} "
        f"(cannot enter {private}: mode 0700, owner root:root); make {private} enterable by nobody" in log
    ), log
    assert state.stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_make_run_as_an_ordinary_user_from_their_home(scratch, dns_server) -> None:
    """As root the test becomes nobody (setpriv) with a home of its own; otherwise it is the user."""
    home = scratch / "home"
    home.mkdir(mode=0o700)
    clone_dir = clone(home / "apd")
    seeded_database(home / ".local" / "state" / "apd" / "apd.sqlite3")  # the default for a user
    port = free_port()
    config = home / "settings.py"
    config.write_text(settings_for(port, dns_server))
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(home)], check=True)
        setpriv = require_binary("setpriv")
        prefix = (setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--")
    output = scratch / "make-run-user.log"
    proc, seconds = run_make(clone_dir, config, port, output, prefix, HOME=str(home))
    try:
        assert_answers(port)
    finally:
        stop(proc)
    log = output.read_text(errors="replace")
    print(f"make run as an ordinary user: listening after {seconds:.1f} s (venv build included)")
    assert "Traceback" not in log and "WARNING" not in log, log

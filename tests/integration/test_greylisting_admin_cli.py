"""apd-greylisting-admin and apd-cleanup-db end to end on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from admin import cleanup_db
from admin import greylisting_admin as tool
from tests.helpers.apd_process import ROOT
from tests.helpers.policy_client import rcpt
from tests.integration.greylisting_backends import BACKENDS, open_backend

GREY = "451 4.7.1 Intentional policy rejection, please try again later"


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    yield b
    b.close()


def admin(backend, capsys, *argv):
    code = tool.main(["-c", str(backend.settings_file), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def settings_rows(backend):
    return sorted(
        tuple(r) for r in backend.db.query("SELECT account, priority, sender, sender_priority, active FROM greylisting")
    )


def test_enable_disable_delete_list(backend, capsys):
    assert admin(backend, capsys, "--list") == (0, "* No greylisting settings.\n", "")
    assert admin(backend, capsys, "--enable") == (0, "* Enable greylisting: @. -> @.\n", "")
    code, out, _ = admin(backend, capsys, "--disable", "--from", "@gmail.com", "--to", "user@example.com")
    assert (code, out) == (0, "* Disable greylisting: @gmail.com -> user@example.com\n")
    admin(backend, capsys, "--disable", "--from", "192.0.2.0/24")
    admin(backend, capsys, "--disable", "--to", "@example.org")
    admin(backend, capsys, "--enable", "--to", "@example.org")  # replaces the row
    assert settings_rows(backend) == [
        ("@.", 0, "192.0.2.0/24", 70, 0),
        ("@.", 0, "@.", 0, 1),
        ("@example.org", 60, "@.", 0, 1),
        ("user@example.com", 100, "@gmail.com", 60, 0),
    ]
    code, out, _ = admin(backend, capsys, "--list")
    assert code == 0
    assert out.splitlines() == [
        "Status   Sender                             -> Local Account                 ",
        "-" * 78,
        "disabled @gmail.com                         -> user@example.com              ",
        "enabled  @. (anyone)                        -> @example.org                  ",
        "disabled 192.0.2.0/24                       -> @. (anyone)                   ",
        "enabled  @. (anyone)                        -> @. (anyone)                   ",
    ]
    code, out, _ = admin(backend, capsys, "--list", "--to", "@example.org")
    assert out.splitlines()[2:] == ["enabled  @. (anyone)                        -> @example.org                  "]
    assert admin(backend, capsys, "--delete", "--to", "@example.org") == (
        0,
        "* Delete greylisting setting: @. -> @example.org\n",
        "",
    )
    assert ("@example.org", 60, "@.", 0, 1) not in settings_rows(backend)


def test_whitelist_domains(backend, capsys):
    assert admin(backend, capsys, "--whitelist-domain", "--from", "@example.com")[:2] == (
        0,
        "* Whitelisting sender domain: example.com\n",
    )
    assert admin(backend, capsys, "--whitelist-domain", "--from", "@example.com")[0] == 0  # duplicate ignored
    admin(backend, capsys, "--whitelist-domain", "--from", "@big.example.net")
    assert admin(backend, capsys, "--list-whitelist-domains")[1] == "big.example.net\nexample.com\n"
    for table, sender in (
        ("greylisting_whitelist_domain_spf", "192.0.2.0/24"),
        ("greylisting_whitelists", "192.0.2.7"),
    ):
        backend.db.execute(
            f"INSERT INTO {table} (account, sender, comment) VALUES ('@.', %s, 'AUTO-UPDATE: example.com')", [sender]
        )
    backend.db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment)"
        " VALUES ('@.', '198.51.100.0/24', 'AUTO-UPDATE: big.example.net')"
    )
    code, out, _ = admin(backend, capsys, "--remove-whitelist-domain", "--from", "@example.com")
    assert (code, out) == (0, "* Remove whitelisted sender domain: example.com\n")
    assert admin(backend, capsys, "--list-whitelist-domains")[1] == "big.example.net\n"
    # the domain's SPF-derived rows are gone too (DIFFERENCES.md 8); other domains' rows stay
    assert backend.db.query("SELECT sender FROM greylisting_whitelist_domain_spf") == [("198.51.100.0/24",)]
    assert backend.db.query("SELECT sender FROM greylisting_whitelists") == []


def test_whitelists(backend, capsys):
    assert admin(backend, capsys, "--add-whitelist", "--from", "@gmail.com")[0] == 0
    assert admin(backend, capsys, "--add-whitelist", "--from", "192.0.2.9", "--to", "user@example.com")[0] == 0
    code, _, err = admin(backend, capsys, "--add-whitelist", "--from", "@gmail.com")
    assert code == 1 and err == "<<< ERROR >>> Whitelist exists already: @gmail.com -> @.\n"
    backend.db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES ('@.', '203.0.113.0/24', 'AUTO-UPDATE: x.org')"
    )
    assert admin(backend, capsys, "--list-whitelists")[1].splitlines() == [
        "@gmail.com -> @., ''",
        "192.0.2.9 -> user@example.com, ''",
        "203.0.113.0/24 -> @., 'AUTO-UPDATE: x.org'",
    ]
    assert (
        admin(backend, capsys, "--list-whitelists", "--to", "user@example.com")[1]
        == "192.0.2.9 -> user@example.com, ''\n"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--enable", "--from", "not a sender"], "<<< ERROR >>> Invalid sender address.\n"),
        (["--enable", "--to", "example.com"], "<<< ERROR >>> Invalid recipient address.\n"),
        (["--from", "@x.com"], "<<< ERROR >>> No valid operation specified. Exit.\n"),
        (["--add-whitelist", "--from", "192.0.2.*"], "<<< ERROR >>> Invalid sender address.\n"),
        (["--add-whitelist", "--to", "a b@c d"], "<<< ERROR >>> Invalid recipient address.\n"),
    ],
)
def test_invalid_input_writes_nothing(backend, capsys, argv, message):
    code, out, err = admin(backend, capsys, *argv)
    assert (code, out, err) == (2, "", message)
    assert settings_rows(backend) == []
    assert backend.db.query("SELECT COUNT(*) FROM greylisting_whitelists") == [(0,)]


@pytest.mark.parametrize("action", ["--enable", "--add-whitelist"])
def test_non_utf8_argument_exits_2_without_traceback(tmp_path, action):
    """Bytes that are not UTF-8 reach Python as lone surrogates, which iRedAPD's tool (and apd's
    before) printed or stored with a UnicodeEncodeError traceback."""
    backend = open_backend(None, tmp_path, kind="sqlite")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "admin.greylisting_admin", "-c", str(backend.settings_file), action]
            + ["--to", b"caf\xe9@example.com"],
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=str(ROOT),
            timeout=60,
        )
        assert (run.returncode, run.stdout) == (2, b"")
        assert run.stderr == b"<<< ERROR >>> Argument is not valid UTF-8: caf\\xe9@example.com\n"
        assert settings_rows(backend) == []
        assert backend.db.query("SELECT COUNT(*) FROM greylisting_whitelists") == [(0,)]
    finally:
        backend.close()


def test_invalid_whitelist_domain(backend, capsys):
    code, out, err = admin(backend, capsys, "--whitelist-domain", "--from", "user@example.com")
    assert code == 1 and err.startswith("INVALID_DOMAIN")
    assert backend.db.query("SELECT COUNT(*) FROM greylisting_whitelist_domains") == [(0,)]


def test_tool_changes_apply_to_the_next_request(backend, capsys, apd_factory):
    apd = apd_factory(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False, **backend.values)
    apd.wait_for_log("Starting apd")
    with apd.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"
        admin(backend, capsys, "--enable")
        assert client.ask(**rcpt()) == GREY
        admin(backend, capsys, "--disable", "--from", "192.0.2.0/24")  # rcpt() comes from 192.0.2.10
        assert client.ask(**rcpt()) == "DUNNO"
        assert client.ask(**rcpt(client_address="198.51.100.7")) == GREY
        admin(backend, capsys, "--add-whitelist", "--from", "198.51.100.7")
        assert client.ask(**rcpt(client_address="198.51.100.7")) == "DUNNO"
        admin(backend, capsys, "--disable", "--to", "user@example.com")
        assert client.ask(**rcpt(client_address="203.0.113.1")) == "DUNNO"
        assert client.ask(**rcpt(client_address="203.0.113.1", recipient="other@example.com")) == GREY


def test_cleanup_db(backend, capsys):
    now = 1_700_000_000
    db = backend.db
    for i in range(5):
        db.execute(
            "INSERT INTO greylisting_tracking (sender, recipient, client_address, record_expired)"
            " VALUES (%s, 'r@example.com', '192.0.2.1', %s)",
            [f"s{i}@example.net", now - 10 if i < 3 else now + 10],
        )
    db.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES ('192.0.2.1', 5, %s)", [now - 3 * 86400]
    )
    db.execute("INSERT INTO senderscore_cache (client_address, score, time) VALUES ('192.0.2.2', 100, 4102444799)")
    db.execute("INSERT INTO smtp_sessions (time_num, action) VALUES (%s, 'REJECT')", [now - 8 * 86400])
    db.execute("INSERT INTO smtp_sessions (time_num, action) VALUES (%s, 'REJECT')", [now - 6 * 86400])
    settings = backend.settings.replace(CLEANUP_QUERY_SIZE_LIMIT=2)
    lines: list[str] = []
    cleanup_db.cleanup(db, settings, now, lines.append)
    assert lines == [
        "* throttle_tracking   : 0 left.",
        "* greylisting_tracking: 2 records removed.",
        "* greylisting_tracking: 3 records removed.",
        "* greylisting_tracking: 2 left.",
        "* senderscore_cache   : 1 records removed.",
        "* senderscore_cache   : 1 left.",
        "* smtp_sessions       : 1 records removed.",
        "* smtp_sessions       : 1 left.",
    ]
    assert sorted(r[0] for r in db.query("SELECT sender FROM greylisting_tracking")) == [
        "s3@example.net",
        "s4@example.net",
    ]


def test_throttle_tracking_cleanup(backend):
    now = 1_700_000_000
    db = backend.db
    db.execute("INSERT INTO throttle (account, kind, period) VALUES ('@.', 'inbound', 60)")
    (tid,) = db.query_one("SELECT id FROM throttle")
    db.execute(
        "INSERT INTO throttle_tracking (tid, account, period, init_time) VALUES (%s, 'a@x.com', 60, %s)",
        [tid, now - 61],
    )
    db.execute(
        "INSERT INTO throttle_tracking (tid, account, period, init_time) VALUES (%s, 'b@x.com', 60, %s)",
        [tid, now - 59],
    )
    lines: list[str] = []
    cleanup_db.cleanup(db, backend.settings, now, lines.append)
    assert lines[:2] == ["* throttle_tracking   : 1 records removed.", "* throttle_tracking   : 1 left."]


def test_console_scripts_run_as_subprocesses(backend):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "admin.greylisting_admin", "-c", str(backend.settings_file), "--enable"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=60,
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "* Enable greylisting: @. -> @.\n", "")
    run = subprocess.run(
        [sys.executable, "-m", "admin.cleanup_db", "-c", str(backend.settings_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=60,
    )
    assert run.returncode == 0 and "* greylisting_tracking: 0 left." in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "admin.greylisting_admin"], capture_output=True, text=True, env=env, cwd=str(ROOT)
    )
    assert run.returncode == 0 and run.stdout.startswith("Usage: apd-greylisting-admin")

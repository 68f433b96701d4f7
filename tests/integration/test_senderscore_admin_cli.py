"""apd-senderscore-admin on SQLite, MariaDB and PostgreSQL (apd's schema and iRedAPD's)."""

from __future__ import annotations

import pytest

from admin import senderscore_admin as tool
from apd.store.senderscore import WHITELISTED_TIME
from tests.integration.greylisting_backends import BACKENDS, IREDMAIL_BACKENDS, open_backend


@pytest.fixture(params=BACKENDS + IREDMAIL_BACKENDS)
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    yield b
    b.close()


def admin(backend, capsys, *argv):
    code = tool.main(["-c", str(backend.settings_file), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def cache(backend):
    return sorted(tuple(r) for r in backend.db.query("SELECT client_address, score, time FROM senderscore_cache"))


def test_whitelist_replaces_cached_scores(backend, capsys):
    backend.db.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES (%s, %s, %s)", ("192.0.2.7", 12, 1000)
    )
    backend.db.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES (%s, %s, %s)", ("192.0.2.9", 40, 1000)
    )
    code, out, err = admin(backend, capsys, "-w", "192.0.2.7", "2001:db8::1", "192.0.2.7")
    assert (code, out, err) == (0, "Whitelisted: 192.0.2.7, 2001:db8::1\n", "")
    assert cache(backend) == [
        ("192.0.2.7", 100, WHITELISTED_TIME),
        ("192.0.2.9", 40, 1000),
        ("2001:db8::1", 100, WHITELISTED_TIME),
    ]
    # again: still one row per address
    assert admin(backend, capsys, "-w", "192.0.2.7")[0] == 0
    assert [r for r in cache(backend) if r[0] == "192.0.2.7"] == [("192.0.2.7", 100, WHITELISTED_TIME)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-w"], "No valid IP address."),
        (["192.0.2.1"], "Invalid argument."),
        (["-w", "192.0.2.1", "192.0.2.300"], "Not an IP address: 192.0.2.300"),
        (["-w", "bad\x1bname"], "Not an IP address: bad\\x1bname"),
    ],
)
def test_invalid_input_writes_nothing(backend, capsys, argv, message):
    code, out, err = admin(backend, capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(message + "\n\nUsage: apd-senderscore-admin")
    assert cache(backend) == []


def test_no_arguments_print_the_usage(capsys):
    assert tool.main([]) == 0
    assert capsys.readouterr().out.startswith("Usage: apd-senderscore-admin")


def test_unknown_config_option_value_is_refused(capsys):
    assert tool.main(["-c"]) == 2
    assert capsys.readouterr().err.startswith("-c needs a settings file.")

"""A real apd subprocess with backend 'ldap': accounts in slapd, amavisd/iredapd on MariaDB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.policy_client import rcpt
from tests.helpers.rows import wait_for_rows
from tests.helpers.servers import require_module

require_module("ldap")
pytestmark = pytest.mark.servers

CUSTOM_CHECKS = Path(__file__).resolve().parents[1] / "data" / "custom_checks"
DEFER = "451 4.3.0 Directory unavailable, try again later"


@pytest.fixture
def start_apd(apd_factory, slapd_server, mariadb_server):
    mariadb_server.truncate("apd")

    def start(**settings):
        values = mariadb_server.apd_settings("apd", backend="ldap")
        values.update(slapd_server.settings())
        values.update(
            plugins=["custom_is_local"],
            CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
            STORE_FAILURE_ACTION=DEFER,
            LDAP_TIMEOUT=1.0,
        )
        values.update(settings)
        return apd_factory(**values)

    return start


def ask(apd, recipient: str) -> str:
    with apd.client() as client:
        return client.ask(**rcpt(recipient=recipient))


def wait_for_answer(apd, recipient: str, expected: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (answer := ask(apd, recipient)) != expected:
        assert time.monotonic() < deadline, f"still {answer!r}; log:\n{apd.log()}"
        time.sleep(0.2)


def test_ldap_backend_answers_and_logs_sessions_in_sql(start_apd, mariadb_server):
    apd = start_apd()
    with apd.client() as client:
        assert client.ask(**rcpt(recipient="user@example.com")) == "REJECT local"
        assert client.ask(**rcpt(recipient="user@alias.example.com")) == "REJECT local alias of example.com"
        assert client.ask(**rcpt(recipient="user@backupmx.com")) == "REJECT remote"
        assert client.ask(**rcpt(recipient="user@disabled.com")) == "REJECT remote"
        assert client.ask(**rcpt(recipient="user@unknown.org")) == "REJECT remote"
    # the iredapd database stays SQL with the LDAP backend: the decisions were logged there
    iredapd = mariadb_server.db_name("apd", "iredapd")
    rows = wait_for_rows(
        lambda: mariadb_server.query("SELECT recipient, action FROM smtp_sessions ORDER BY id", database=iredapd), 5
    )
    assert [r[0] for r in rows] == [
        "user@example.com",
        "user@alias.example.com",
        "user@backupmx.com",
        "user@disabled.com",
        "user@unknown.org",
    ]


def test_ldap_outage_gives_failure_action_then_recovers_without_restart(start_apd, slapd_server):
    apd = start_apd(workers=1)
    assert ask(apd, "user@alias.example.com") == "REJECT local alias of example.com"
    worker = apd.worker_pids()
    slapd_server.pause()  # hung directory: bounded by LDAP_TIMEOUT
    try:
        started = time.monotonic()
        assert ask(apd, "user@example.com") == DEFER
        assert time.monotonic() - started < 3.0
    finally:
        slapd_server.resume()
    wait_for_answer(apd, "user@example.com", "REJECT local")
    slapd_server.stop()  # directory down: connection refused
    try:
        started = time.monotonic()
        assert ask(apd, "user@alias.example.com") == DEFER
        assert time.monotonic() - started < 3.0
    finally:
        slapd_server.start()
    wait_for_answer(apd, "user@alias.example.com", "REJECT local alias of example.com")
    assert apd.worker_pids() == worker  # same worker: recovered without a restart
    log = apd.log()
    assert f"LDAP server {slapd_server.uri} is unavailable" in log
    assert f"LDAP server {slapd_server.uri} is reachable again" in log

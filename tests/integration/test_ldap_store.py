"""The check chain on a Store whose accounts come from LDAP (slapd) and state from SQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apd.checks import instantiate, plan
from apd.policy import Policy
from apd.protocol import PolicyRequest
from apd.settings import defaults
from apd.store import Store, sqlite
from tests.helpers.policy_client import rcpt
from tests.helpers.servers import require_module

ldap = require_module("ldap")
from apd.store.ldap import LdapAccounts  # noqa: E402

pytestmark = pytest.mark.servers

CUSTOM_CHECKS = Path(__file__).resolve().parents[1] / "data" / "custom_checks"
DEFER = "451 4.3.0 Directory unavailable, try again later"

ANSWERS = [
    ("user@example.com", "REJECT local"),
    ("user@EXAMPLE.COM", "REJECT local"),
    ("user@alias.example.com", "REJECT local alias of example.com"),
    ("user@backupmx.com", "REJECT remote"),  # the check excludes backup MX
    ("user@disabled.com", "REJECT remote"),
    ("user@alias.disabled.com", "REJECT remote"),
    ("user@unknown.org", "REJECT remote"),
]


class FakeClock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def chain(slapd_server, tmp_path):
    settings = defaults().replace(
        backend="ldap",
        plugins=["custom_is_local"],
        CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
        STORE_FAILURE_ACTION=DEFER,
        LDAP_TIMEOUT=0.5,
        **slapd_server.settings(),
    )
    clock = FakeClock()
    db = sqlite.open_database(str(tmp_path / "state.sqlite3"), 5.0)
    store = Store(None, db, db, LdapAccounts(settings, clock=clock))
    planned, _warnings = plan(settings)
    policy = Policy(instantiate(planned, settings, store), settings, store)
    yield policy, clock
    store.close()


def ask(policy: Policy, recipient: str) -> str:
    return policy.decide(PolicyRequest.build(rcpt(recipient=recipient))).action


@pytest.mark.parametrize("recipient,expected", ANSWERS)
def test_check_sees_ldap_accounts(chain, recipient, expected):
    policy, _clock = chain
    assert ask(policy, recipient) == expected


def test_directory_hung_gives_failure_action_then_recovers(chain, slapd_server):
    policy, clock = chain
    assert ask(policy, "user@alias.example.com") == "REJECT local alias of example.com"
    slapd_server.pause()
    try:
        started = time.monotonic()
        assert ask(policy, "user@example.com") == DEFER
        assert ask(policy, "user@example.com") == DEFER  # failing fast now
        assert time.monotonic() - started < 2.0
    finally:
        slapd_server.resume()
    clock.now += 60
    assert ask(policy, "user@alias.example.com") == "REJECT local alias of example.com"

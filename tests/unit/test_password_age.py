"""sql_force_change_password and ldap_force_change_password: the pure decisions
(apd/password_age.py) and the SQL check on the embedded SQLite store (real servers and slapd:
tests/integration/test_password_age.py)."""

from __future__ import annotations

import datetime
import logging

import pytest

from apd.checks import instantiate, plan
from apd.checks.sql_force_change_password import NOT_LOCAL, SqlForceChangePassword
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.password_age import (
    EPOCH,
    PasswordRules,
    ldap_expired,
    never_expires,
    sql_expired,
    sql_last_change,
)
from apd.protocol import PolicyRequest
from apd.settings import defaults
from tests.helpers.backends import open_fresh_store, sqlite_settings

DT = datetime.datetime
MESSAGE = defaults().CHANGE_PASSWORD_MESSAGE
REJECT = "REJECT " + MESSAGE


def test_rules_from_settings():
    settings = defaults().replace(
        CHANGE_PASSWORD_DAYS=30,
        CHANGE_PASSWORD_MESSAGE="Change it",
        CHANGE_PASSWORD_NEVER_EXPIRE_USERS=["Boss@X.org", " y.org"],
    )
    rules = PasswordRules.from_settings(settings)
    assert rules == PasswordRules(30, "Change it", frozenset({"boss@x.org", "y.org"}))
    assert rules.reply == "REJECT Change it"
    assert PasswordRules.from_settings(defaults()).reply == (
        "REJECT Password expired or never changed, please change your password in webmail before sending email"
    )


@pytest.mark.parametrize(
    "listed,login,domain,exempt",
    [
        (["user@x.org"], "user@x.org", "x.org", True),
        (["x.org"], "user@x.org", "x.org", True),
        (["User@X.org"], "user@x.org", "x.org", True),  # entries compared ignoring case
        (["@x.org"], "user@x.org", "x.org", False),  # only full addresses and bare domains
        (["other@x.org", "y.org"], "user@x.org", "x.org", False),
        ([], "user@x.org", "x.org", False),
    ],
)
def test_never_expires(listed, login, domain, exempt):
    rules = PasswordRules.from_settings(defaults().replace(CHANGE_PASSWORD_NEVER_EXPIRE_USERS=listed))
    assert never_expires(rules, login, domain) is exempt


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, EPOCH),  # NULL: never changed
        ("", EPOCH),
        ("0000-00-00 00:00:00", EPOCH),  # MySQL's zero date, given as text by the driver
        ("garbage", EPOCH),
        ("1970-01-01 01:01:01", DT(1970, 1, 1, 1, 1, 1)),  # iRedMail's MySQL default
        ("2026-11-30 12:00:00", DT(2026, 11, 30, 12)),  # SQLite text
        ("2026-11-30 12:00:00.250000", DT(2026, 11, 30, 12, 0, 0, 250000)),
        ("2026-11-30", DT(2026, 11, 30)),
        (b"2026-11-30 12:00:00", DT(2026, 11, 30, 12)),
        (DT(2026, 11, 30, 12), DT(2026, 11, 30, 12)),
        (DT(2026, 11, 30, 12, tzinfo=datetime.timezone.utc), DT(2026, 11, 30, 12)),
        (datetime.date(2026, 11, 30), DT(2026, 11, 30)),
    ],
)
def test_sql_last_change(value, expected):
    assert sql_last_change(value) == expected


NOW = DT(2026, 12, 4, 12, 0, 0)


@pytest.mark.parametrize(
    "last_change,days,expired",
    [
        (NOW - datetime.timedelta(days=89, hours=23), 90, False),
        (NOW - datetime.timedelta(days=90), 90, True),  # exactly the limit: rejected
        (NOW - datetime.timedelta(days=120), 90, True),
        (NOW, 90, False),
        (NOW + datetime.timedelta(days=3), 90, False),  # changed "in the future": clock skew
        (EPOCH, 90, True),  # never changed
        (DT(1970, 1, 1, 1, 1, 1), 90, True),  # MySQL default: never changed
        (NOW - datetime.timedelta(seconds=1), 0, True),  # 0 days: every password expired
        (NOW - datetime.timedelta(days=10), 11, False),
        (NOW - datetime.timedelta(days=11), 11, True),
    ],
)
def test_sql_expired(last_change, days, expired):
    assert sql_expired(last_change, NOW, days) is expired


TODAY = datetime.date(2026, 12, 4)
TODAY_DAYS = (TODAY - datetime.date(1970, 1, 1)).days  # 20791


@pytest.mark.parametrize(
    "value,days,expired",
    [
        (str(TODAY_DAYS), 90, False),
        (str(TODAY_DAYS - 89), 90, False),
        (str(TODAY_DAYS - 90), 90, True),  # >= days: rejected
        (str(TODAY_DAYS - 500), 90, True),
        ("19000", 90, True),
        (None, 90, True),  # missing: counts as 0, expired
        ("", 90, True),
        ("0", 90, True),
        (" 20790 ", 90, False),
        (str(TODAY_DAYS + 5), 90, False),
        (str(TODAY_DAYS), 0, True),
        ("not-a-number", 90, None),  # iRedAPD fails: DUNNO
        ("20790.5", 90, None),
    ],
)
def test_ldap_expired(value, days, expired):
    assert ldap_expired(value, TODAY, days) is expired


# --- the SQL check on SQLite


@pytest.fixture
def store(tmp_path):
    store = open_fresh_store("sqlite", sqlite_settings(tmp_path))
    db = store.vmail
    rows = [
        ("fresh@example.com", "2026-11-30 12:00:00"),  # 4 days before NOW
        ("old@example.com", "2026-06-01 00:00:00"),
        ("never@example.com", "1970-01-01 01:01:01"),
        ("empty@example.com", ""),
    ]
    db.execute_many("INSERT INTO mailbox (username, domain, passwordlastchange) VALUES (%s, 'example.com', %s)", rows)
    yield store
    store.close()


def ask(check, store, sasl_username, now=NOW):
    fields = {"protocol_state": "RCPT", "sender": sasl_username, "recipient": "x@other.org"}
    fields["sasl_username"] = sasl_username
    request = PolicyRequest.build(fields)
    return check.check(request, RequestContext(request, store, TrustedClients(()), now.timestamp()))


@pytest.mark.parametrize(
    "login,settings,expected",
    [
        ("fresh@example.com", {}, None),
        ("old@example.com", {}, REJECT),
        ("never@example.com", {}, REJECT),
        ("empty@example.com", {}, REJECT),
        ("nobody@example.com", {}, None),  # no mailbox row
        ("", {}, NOT_LOCAL),  # no SMTP AUTH
        ("fresh@example.com", {"CHANGE_PASSWORD_DAYS": 4}, REJECT),
        ("fresh@example.com", {"CHANGE_PASSWORD_DAYS": 5}, None),
        ("old@example.com", {"CHANGE_PASSWORD_DAYS": 365}, None),
        ("old@example.com", {"CHANGE_PASSWORD_MESSAGE": "Go to webmail"}, "REJECT Go to webmail"),
        ("old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["old@example.com"]}, None),
        ("old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["example.com"]}, None),
        ("old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["other.com", "x@example.com"]}, REJECT),
    ],
)
def test_sql_check(store, login, settings, expected):
    check = SqlForceChangePassword(store.settings.replace(**settings), store)
    assert ask(check, store, login) == expected


def test_sql_check_exempt_login_costs_no_statement(store):
    check = SqlForceChangePassword(store.settings.replace(CHANGE_PASSWORD_NEVER_EXPIRE_USERS=["example.com"]), store)
    store.vmail.close()
    store.vmail.dialect.connect = lambda: pytest.fail("an exempt login was looked up")
    assert ask(check, store, "old@example.com") is None


@pytest.mark.parametrize("name", ["sql_force_change_password", "ldap_force_change_password"])
def test_priority_zero_with_warning(name):
    planned, warnings = plan(defaults().replace(plugins=["greylisting", name, "senderscore"]))
    assert [(p.name, p.priority) for p in planned] == [("greylisting", 80), ("senderscore", 10), (name, 0)]
    assert warnings == [f"check {name} runs at priority 0 (iRedAPD's priority key is {name}_in_days)"]
    planned, warnings = plan(defaults().replace(plugins=["greylisting", name], PLUGIN_PRIORITIES={name: 95}))
    assert [p.name for p in planned] == [name, "greylisting"] and warnings == []


@pytest.mark.parametrize(
    "backend,name",
    [
        ("ldap", "sql_force_change_password"),
        ("sqlite", "ldap_force_change_password"),
        ("mysql", "ldap_force_change_password"),
    ],
)
def test_check_on_another_backend_warns_once_and_answers_dunno(caplog, backend, name):
    settings = defaults().replace(backend=backend, plugins=[name])
    planned, _ = plan(settings)
    with caplog.at_level(logging.WARNING):
        (check,) = instantiate(planned, settings, None)
    request = PolicyRequest.build({"sasl_username": "old@example.com", "protocol_state": "RCPT"})
    assert check.check(request, None) is None
    assert check.check(request, None) is None
    messages = [r.getMessage() for r in caplog.records if r.name == f"apd.checks.{name}"]
    assert len(messages) == 1 and messages[0].startswith(f"check {name} needs ")

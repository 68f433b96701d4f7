"""sql_force_change_password on SQLite, MariaDB and PostgreSQL (apd's DDL and iRedMail's vmail
schema: DATETIME and TIMESTAMP columns, their defaults), ldap_force_change_password on slapd
with iRedMail's LDAP schema, both also through a real apd subprocess."""

from __future__ import annotations

import datetime

import pytest

from apd.checks.ldap_force_change_password import LdapForceChangePassword
from apd.checks.sql_force_change_password import NOT_LOCAL, SqlForceChangePassword
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.settings import defaults
from apd.store import Store
from tests.helpers.policy_client import rcpt
from tests.helpers.servers import require_module

pytestmark = pytest.mark.servers

REJECT = "REJECT " + defaults().CHANGE_PASSWORD_MESSAGE
DAY = datetime.timedelta(days=1)


def ask(check, store, login, now=None):
    fields = {"protocol_state": "RCPT", "sender": login, "recipient": "x@other.org", "sasl_username": login}
    request = PolicyRequest.build(fields)
    return check.check(request, RequestContext(request, store, TrustedClients(()), now))


# --- SQL


def text(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def sql_store(schema_store):
    now = datetime.datetime.now()
    rows = [
        ("fresh@example.com", text(now - 10 * DAY)),
        ("limit@example.com", text(now - 30 * DAY - datetime.timedelta(minutes=1))),
        ("old@example.com", text(now - 100 * DAY)),
        ("never@example.com", "1970-01-01 01:01:01"),
    ]
    schema_store.vmail.execute_many(
        "INSERT INTO mailbox (username, domain, passwordlastchange) VALUES (%s, 'example.com', %s)", rows
    )
    schema_store.vmail.execute("INSERT INTO mailbox (username, domain) VALUES ('default@example.com', 'example.com')")
    return schema_store


@pytest.mark.parametrize(
    "login,settings,expected",
    [
        ("fresh@example.com", {}, None),
        ("old@example.com", {}, REJECT),
        ("never@example.com", {}, REJECT),  # iRedMail's MySQL default: never changed
        ("limit@example.com", {"CHANGE_PASSWORD_DAYS": 30}, REJECT),
        ("limit@example.com", {"CHANGE_PASSWORD_DAYS": 31}, None),
        ("nobody@example.com", {}, None),
        ("", {}, NOT_LOCAL),
        ("old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["example.com"]}, None),
        ("old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["old@example.com"]}, None),
        ("old@example.com", {"CHANGE_PASSWORD_MESSAGE": "Change it now"}, "REJECT Change it now"),
    ],
)
def test_sql_password_age(sql_store, login, settings, expected):
    check = SqlForceChangePassword(sql_store.settings.replace(**settings), sql_store)
    assert ask(check, sql_store, login) == expected


def test_sql_column_default(sql_store):
    """MySQL's (and apd's SQLite) default 1970-01-01 01:01:01 means never changed; PostgreSQL's
    default NOW() means just changed."""
    check = SqlForceChangePassword(sql_store.settings, sql_store)
    expected = None if sql_store.backend == "pgsql" else REJECT
    assert ask(check, sql_store, "default@example.com") == expected


@pytest.mark.parametrize(
    "login", ["old@example.com' OR '1'='1", "%@example.com", "x@example.com';DELETE FROM mailbox;--", "o_d@example.com"]
)
def test_sql_injection_changes_nothing(sql_store, login):
    check = SqlForceChangePassword(sql_store.settings, sql_store)
    assert ask(check, sql_store, login) is None
    assert sql_store.vmail.query("SELECT COUNT(*) FROM mailbox") == [(5,)]


def test_sql_through_apd(apd_factory, mariadb_server):
    mariadb_server.truncate("iredmail")
    vmail = mariadb_server.db_name("iredmail", "vmail")
    now = datetime.datetime.now()
    for login, changed in (("fresh@example.com", now - DAY), ("old@example.com", now - 200 * DAY)):
        mariadb_server.execute(
            "INSERT INTO mailbox (username, domain, passwordlastchange) VALUES (%s, 'example.com', %s)",
            (login, text(changed)),
            database=vmail,
        )
    apd = apd_factory(**mariadb_server.apd_settings("iredmail", plugins=["sql_force_change_password"]))
    with apd.client() as client:
        assert client.ask(**rcpt(sasl_username="old@example.com", sender="old@example.com")) == REJECT
        assert client.ask(**rcpt(sasl_username="fresh@example.com", sender="fresh@example.com")) == "DUNNO"
        assert client.ask(**rcpt()) == "DUNNO"  # no SMTP AUTH: "DUNNO Not a local user", which Postfix never sees
    assert "check sql_force_change_password runs at priority 0" in apd.log()


# --- LDAP


def days_ago(days: int) -> str:
    return str((datetime.date.today() - datetime.date(1970, 1, 1)).days - days)


@pytest.fixture(scope="module")
def ldap_users(slapd_server):
    """Users of example.com with passwords of known age (removed again after the module)."""
    from tests.helpers.slapd import _user

    entries = [
        _user("pw-fresh@example.com", shadowLastChange=days_ago(10), shadowAddress=["pw-alias@example.com"]),
        _user("pw-old@example.com", shadowLastChange=days_ago(100)),
        _user("pw-limit@example.com", shadowLastChange=days_ago(30)),
        _user("pw-none@example.com"),
    ]
    del entries[3][1]["shadowLastChange"]
    for dn, attrs in entries:
        slapd_server.add(dn, attrs)
    yield
    for dn, _ in entries:
        slapd_server.delete(dn)


@pytest.fixture
def ldap_store(slapd_server, ldap_users):
    require_module("ldap")
    from apd.store.ldap import LdapAccounts

    accounts = LdapAccounts(defaults().replace(backend="ldap", **slapd_server.settings()), hostname="mx.apd.test")
    yield Store(None, None, None, accounts)
    accounts.close()


def ldap_check(store, **settings) -> LdapForceChangePassword:
    return LdapForceChangePassword(defaults().replace(backend="ldap", **settings), store)


@pytest.mark.parametrize(
    "login,settings,expected",
    [
        ("pw-fresh@example.com", {}, None),
        ("pw-alias@example.com", {}, None),  # found by its shadowAddress
        ("pw-old@example.com", {}, REJECT),
        ("pw-none@example.com", {}, REJECT),  # no shadowLastChange: counts as 0
        ("user@example.com", {}, REJECT),  # 19000: 2022
        ("pw-limit@example.com", {"CHANGE_PASSWORD_DAYS": 30}, REJECT),
        ("pw-limit@example.com", {"CHANGE_PASSWORD_DAYS": 31}, None),
        ("nobody@example.com", {}, None),  # no entry
        ("", {}, None),
        ("pw-old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["example.com"]}, None),
        ("pw-old@example.com", {"CHANGE_PASSWORD_NEVER_EXPIRE_USERS": ["pw-old@example.com"]}, None),
        ("pw-old@example.com", {"CHANGE_PASSWORD_MESSAGE": "Change it now"}, "REJECT Change it now"),
    ],
)
def test_ldap_password_age(ldap_store, login, settings, expected):
    assert ask(ldap_check(ldap_store, **settings), ldap_store, login) == expected


@pytest.mark.parametrize(
    "login", ["*@example.com", "pw-old@example.com)(mail=*", "*", "pw-*@example.com", "pw-old@example.com\x00"]
)
def test_ldap_injection_finds_no_entry(ldap_store, login):
    assert ask(ldap_check(ldap_store), ldap_store, login) is None


def test_ldap_one_search_per_request(ldap_store):
    searches = []
    search = ldap_store.accounts.search
    ldap_store.accounts.search = lambda *args, **kwargs: searches.append(args[2]) or search(*args, **kwargs)
    assert ask(ldap_check(ldap_store), ldap_store, "pw-old@example.com") == REJECT
    assert len(searches) == 1
    assert (
        ask(
            ldap_check(ldap_store, CHANGE_PASSWORD_NEVER_EXPIRE_USERS=["example.com"]), ldap_store, "pw-old@example.com"
        )
        is None
    )
    assert len(searches) == 1  # an exempt login is not looked up


def test_ldap_through_apd(apd_factory, slapd_server, mariadb_server, ldap_users):
    require_module("ldap")
    mariadb_server.truncate("apd")
    values = mariadb_server.apd_settings("apd", backend="ldap", plugins=["ldap_force_change_password"])
    values.update(slapd_server.settings())
    apd = apd_factory(**values)
    with apd.client() as client:
        assert client.ask(**rcpt(sasl_username="pw-old@example.com", sender="pw-old@example.com")) == REJECT
        assert client.ask(**rcpt(sasl_username="pw-fresh@example.com", sender="pw-fresh@example.com")) == "DUNNO"
        assert client.ask(**rcpt(sasl_username="pw-none@example.com", sender="pw-none@example.com")) == REJECT

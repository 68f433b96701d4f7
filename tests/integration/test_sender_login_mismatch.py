"""reject_sender_login_mismatch on real accounts: SQLite, MariaDB and PostgreSQL (apd's DDL and
iRedMail's vmail schema), slapd with iRedMail's LDAP schema (its seeded DIT, tests/helpers/slapd.py),
SPF through dnsmasq and mlmmjadmin through a stdlib HTTP server.

The SQL accounts mirror the LDAP DIT, so one table of cases runs on every backend:
``user@example.com`` with the per-user alias ``user.alias@``; the alias ``alias@`` with member
``user@``; the mlmmj list ``list@``; the alias domain ``alias.example.com``; the backup-MX domain
``backupmx.com`` and the inactive ``disabled.com``.
"""

from __future__ import annotations

import logging
import time

import pytest

from apd import replies
from apd.checks.reject_sender_login_mismatch import RejectSenderLoginMismatch
from apd.context import RequestContext
from apd.mlmmjadmin import MlmmjAdmin
from apd.netmatch import TrustedClients
from apd.protocol import RequestReader
from apd.settings import defaults
from apd.store import Store
from tests.helpers.mlmmjadmin import MlmmjadminStub
from tests.helpers.servers import require_module

pytestmark = pytest.mark.servers

FORGED = replies.REJECT_FORGED_SENDER
MISMATCH = replies.REJECT_SENDER_LOGIN_MISMATCH
CLIENT = "198.51.100.7"
TOKEN = "api-secret"


def seed_sql(store) -> None:
    db = store.vmail
    for domain, backupmx, active in (("example.com", 0, 1), ("backupmx.com", 1, 1), ("disabled.com", 0, 0)):
        db.execute(
            "INSERT INTO domain (domain, transport, backupmx, active) VALUES (%s, 'dovecot', %s, %s)",
            (domain, backupmx, active),
        )
    for alias, target in (("alias.example.com", "example.com"), ("alias.disabled.com", "disabled.com")):
        db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES (%s, %s)", (alias, target))
    forwardings = [
        # address, forwarding, is_list, is_alias, active
        ("user.alias@example.com", "user@example.com", 0, 1, 1),  # per-user alias address
        ("ext.alias@example.com", "user+tag@example.com", 0, 1, 1),  # alias of the user's +ext form
        ("alias@example.com", "user@example.com", 1, 0, 1),  # alias account, member user@
        ("alias@example.com", "outside@other.org", 1, 0, 1),
        ("oldteam@example.com", "user@example.com", 1, 0, 0),  # inactive membership
    ]
    db.execute_many(
        "INSERT INTO forwardings (address, forwarding, domain, dest_domain, is_list, is_alias, active)"
        " VALUES (%s, %s, 'example.com', %s, %s, %s, %s)",
        [(a, f, f.partition("@")[2], is_list, is_alias, active) for a, f, is_list, is_alias, active in forwardings],
    )
    for n, (address, active) in enumerate((("list@example.com", 1), ("closed@example.com", 0))):
        db.execute(
            "INSERT INTO maillists (address, domain, transport, mlid, active) VALUES (%s, 'example.com', %s, %s, %s)",
            (address, f"mlmmj:example.com/{address}", f"mlid-{n}", active),
        )


@pytest.fixture
def sql_accounts(schema_store):
    seed_sql(schema_store)
    return schema_store


@pytest.fixture
def ldap_accounts(slapd_server):
    require_module("ldap")
    from apd.store.ldap import LdapAccounts

    settings = defaults().replace(backend="ldap", **slapd_server.settings())
    accounts = LdapAccounts(settings, hostname="mx.apd.test")
    yield Store(None, None, None, accounts)
    accounts.close()


def parse(**attrs: str):
    """A request as apd reads it off the socket (lowercased, extensions stripped)."""
    fields = {"request": "smtpd_access_policy", "protocol_state": "RCPT", "client_address": CLIENT}
    fields.update(attrs)
    [request] = RequestReader().feed(("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n").encode())
    return request


def make_check(store, **overrides) -> RejectSenderLoginMismatch:
    base = {"CHECK_SPF_IF_LOGIN_MISMATCH": False, "ALLOWED_LOGIN_MISMATCH_LIST_MEMBER": True}
    base.update(overrides)
    return RejectSenderLoginMismatch(defaults().replace(**base), store)


def ask(check, store, mynetworks=(), **attrs: str):
    request = parse(**attrs)
    return check.check(request, RequestContext(request, store, TrustedClients(mynetworks)))


# (sender, recipient, sasl_username, expected); settings: the spec's table (LIST_MEMBER on), no SPF
CASES = [
    # --- without SMTP AUTH
    ("user@example.com", "someone@other.org", "", FORGED),  # forged local sender
    ("User@Example.COM", "someone@other.org", "", FORGED),
    ("friend@other.org", "user@example.com", "", None),  # external sender to a local user
    ("x@other.org", "y@other.org", "", FORGED),  # SD == RD is enough, hosted here or not
    ("x@alias.example.com", "someone@other.org", "", FORGED),  # alias domains are local
    ("x@backupmx.com", "someone@other.org", "", None),  # backup MX is not local
    ("x@disabled.com", "someone@other.org", "", None),  # inactive domain is not local
    ("x@alias.disabled.com", "someone@other.org", "", None),  # alias of an inactive domain
    ("", "user@example.com", "", None),  # null sender
    # --- with SMTP AUTH
    ("user@example.com", "someone@other.org", "user@example.com", None),
    ("USER+Tag@Example.com", "someone@other.org", "User@example.COM", None),  # case and +ext
    ("", "someone@other.org", "user@example.com", None),  # null sender: reject_null_sender's
    ("other@example.com", "someone@other.org", "user@example.com", MISMATCH),
    ("user@example.com", "someone@other.org", "member2@example.com", MISMATCH),  # sending as someone else
    ("user.alias@example.com", "someone@other.org", "user@example.com", None),  # per-user alias
    ("user.alias@example.com", "someone@other.org", "member2@example.com", MISMATCH),  # not hers
    ("user@alias.example.com", "someone@other.org", "user@example.com", None),  # alias domain
    ("other@alias.example.com", "someone@other.org", "user@example.com", MISMATCH),
    ("alias@example.com", "someone@other.org", "user@example.com", None),  # member of the alias
    ("alias@alias.example.com", "someone@other.org", "user@example.com", None),  # ... in an alias domain
    ("alias@example.com", "someone@other.org", "member2@example.com", MISMATCH),  # not a member
    ("x@nowhere.org", "someone@other.org", "user@example.com", MISMATCH),
]


@pytest.mark.parametrize("sender,recipient,login,expected", CASES)
def test_sql_accounts(sql_accounts, sender, recipient, login, expected):
    check = make_check(sql_accounts)
    assert ask(check, sql_accounts, sender=sender, recipient=recipient, sasl_username=login) == expected


@pytest.mark.parametrize("sender,recipient,login,expected", CASES)
def test_ldap_accounts(ldap_accounts, sender, recipient, login, expected):
    check = make_check(ldap_accounts)
    assert ask(check, ldap_accounts, sender=sender, recipient=recipient, sasl_username=login) == expected


def test_sql_only_relations(sql_accounts):
    check = make_check(sql_accounts)
    login = "user@example.com"
    assert ask(check, sql_accounts, sender="ext.alias@example.com", sasl_username=login, recipient="r@x.org") is None
    assert ask(check, sql_accounts, sender="oldteam@example.com", sasl_username=login, recipient="r@x.org") == MISMATCH
    # '_' in the login is no LIKE wildcard: u_er+%@example.com must not match user+tag@example.com
    assert ask(check, sql_accounts, sender="ext.alias@example.com", sasl_username="u_er@example.com") == MISMATCH
    # an mlmmj list without an API token: no member can be confirmed
    assert ask(check, sql_accounts, sender="list@example.com", sasl_username=login) == MISMATCH


def test_ldap_list_membership_by_member_of_group(ldap_accounts):
    check = make_check(ldap_accounts)
    assert ask(check, ldap_accounts, sender="list@example.com", sasl_username="user@example.com") is None
    assert ask(check, ldap_accounts, sender="list@example.com", sasl_username="nobody@example.com") == MISMATCH


@pytest.mark.parametrize("strictly,list_member", [(True, False), (False, True), (False, False)])
def test_settings_switch_the_lookups(sql_accounts, strictly, list_member):
    check = make_check(
        sql_accounts, ALLOWED_LOGIN_MISMATCH_STRICTLY=strictly, ALLOWED_LOGIN_MISMATCH_LIST_MEMBER=list_member
    )
    login = "user@example.com"
    own = ask(check, sql_accounts, sender="user.alias@example.com", sasl_username=login)
    domain = ask(check, sql_accounts, sender="user@alias.example.com", sasl_username=login)
    member = ask(check, sql_accounts, sender="alias@example.com", sasl_username=login)
    assert (own, domain) == ((None, None) if strictly else (MISMATCH, MISMATCH))
    assert member == (None if list_member else MISMATCH)


def test_allowed_login_mismatch_senders(sql_accounts):
    check = make_check(
        sql_accounts,
        ALLOWED_LOGIN_MISMATCH_SENDERS=["boss@example.com", "@other.org"],
        ALLOWED_LOGIN_MISMATCH_STRICTLY=False,
        ALLOWED_LOGIN_MISMATCH_LIST_MEMBER=False,
    )
    assert ask(check, sql_accounts, sender="anyone@else.net", sasl_username="boss@example.com") is None
    assert ask(check, sql_accounts, sender="a@other.org", sasl_username="b@other.org") is None
    assert ask(check, sql_accounts, sender="a@else.net", sasl_username="b@other.org") == MISMATCH
    assert ask(check, sql_accounts, sender="user.alias@example.com", sasl_username="user@example.com") == MISMATCH


def test_forged_sender_settings(sql_accounts):
    base = {"sender": "user@example.com", "recipient": "someone@other.org"}
    assert ask(make_check(sql_accounts, CHECK_FORGED_SENDER=False), sql_accounts, **base) is None
    for allowed in (["user@example.com"], ["example.com"], ["user@*"]):
        assert ask(make_check(sql_accounts, ALLOWED_FORGED_SENDERS=allowed), sql_accounts, **base) is None
    assert ask(make_check(sql_accounts, ALLOWED_FORGED_SENDERS=["other@*"]), sql_accounts, **base) == FORGED
    check = make_check(sql_accounts)
    assert ask(check, sql_accounts, mynetworks=["198.51.100.0/24"], **base) is None  # trusted client
    assert ask(check, sql_accounts, client_address="127.0.0.1", **base) is None  # always trusted


SQL_INJECTIONS = [
    # sender, sasl_username: each would allow (or make local) if pasted into the SQL
    ("x@example.com' OR '1'='1", "user@example.com"),
    ("x' OR 1=1 -- @example.com", "user@example.com"),
    ("user.alias@example.com", "user@example.com' OR '1'='1"),
    ("alias@example.com", "%"),
    ("ext.alias@example.com", "%@example.com"),
]


@pytest.mark.parametrize("sender,login", SQL_INJECTIONS)
def test_sql_injection_changes_nothing(sql_accounts, sender, login):
    relations = sql_accounts.accounts.sender_relations(sender, sender, login, True, True)
    assert (relations.allowed, relations.mlmmj_list) == (False, False)


def test_sql_injection_in_a_sender_domain_through_the_check(sql_accounts):
    """``user@example.com'or'1'='1`` passes iRedAPD's email test (a prefix match)."""
    check = make_check(sql_accounts)
    sender = "user@nowhere.org'or'1'='1"
    request = parse(sender=sender, recipient="someone@other.org")
    assert request.invalid_reply is None  # the check really sees it
    assert ask(check, sql_accounts, sender=sender, recipient="someone@other.org") is None  # not local
    assert sql_accounts.accounts.sender_relations("x", "x", "user@example.com", True, True).allowed is False


LDAP_INJECTIONS = [
    ("*", "user@example.com"),
    ("*)(mail=*", "user@example.com"),
    ("user.alias@example.com", "*"),
    ("alias@example.com", "*)(objectClass=*"),
    ("list@example.com", "user@example.com\x00"),
    ("user.alias@example.com\x00x", "user@example.com"),
]


@pytest.mark.parametrize("sender,login", LDAP_INJECTIONS)
def test_ldap_injection_changes_nothing(ldap_accounts, sender, login):
    relations = ldap_accounts.accounts.sender_relations(sender, sender, login, True, True)
    assert (relations.allowed, relations.mlmmj_list) == (False, False)


def test_ldap_mlmmj_list_is_the_sender_not_any_list(ldap_accounts):
    """iRedAPD asks mlmmjadmin whenever any active mlmmj list exists; apd only for the list sent as."""
    accounts = ldap_accounts.accounts
    assert accounts.sender_relations("list@example.com", "list@example.com", "x@example.com", True, False).mlmmj_list
    assert accounts.sender_relations("list.alias@example.com", "list.alias@example.com", "x@example.com", True, False)
    assert not accounts.sender_relations(
        "other@example.com", "other@example.com", "x@example.com", True, True
    ).mlmmj_list


# --- mlmmjadmin


@pytest.fixture
def mlmmj_api():
    api = MlmmjadminStub(TOKEN, {("list@example.com", "subscriber@other.org")}).start()
    yield api
    api.stop()


def mlmmj_check(store, api, **overrides):
    return make_check(store, mlmmjadmin_api_endpoint=api.endpoint, mlmmjadmin_api_auth_token=TOKEN, **overrides)


def test_mlmmj_subscriber_may_send_as_the_list_sql(sql_accounts, mlmmj_api):
    check = mlmmj_check(sql_accounts, mlmmj_api)
    assert ask(check, sql_accounts, sender="list@example.com", sasl_username="subscriber@other.org") is None
    assert ask(check, sql_accounts, sender="list@example.com", sasl_username="user@example.com") == MISMATCH
    assert ask(check, sql_accounts, sender="closed@example.com", sasl_username="subscriber@other.org") == MISMATCH
    assert [path for path, _ in mlmmj_api.requests] == [
        "/api/list@example.com/has_subscriber/subscriber@other.org",
        "/api/list@example.com/has_subscriber/user@example.com",
    ]  # an inactive list is not asked about
    assert {token for _, token in mlmmj_api.requests} == {TOKEN}


def test_mlmmj_subscriber_may_send_as_the_list_ldap(ldap_accounts, mlmmj_api):
    check = mlmmj_check(ldap_accounts, mlmmj_api)
    assert ask(check, ldap_accounts, sender="list@example.com", sasl_username="subscriber@other.org") is None
    assert ask(check, ldap_accounts, sender="list@example.com", sasl_username="someone@other.org") == MISMATCH
    assert ask(check, ldap_accounts, sender="other@example.com", sasl_username="subscriber@other.org") == MISMATCH
    assert len(mlmmj_api.requests) == 2  # no list, no call


def test_mlmmj_without_list_member_setting_is_not_asked_on_sql(sql_accounts, mlmmj_api):
    check = mlmmj_check(sql_accounts, mlmmj_api, ALLOWED_LOGIN_MISMATCH_LIST_MEMBER=False)
    assert ask(check, sql_accounts, sender="list@example.com", sasl_username="subscriber@other.org") == MISMATCH
    assert mlmmj_api.requests == []


def test_hung_mlmmjadmin_costs_at_most_the_timeout(sql_accounts, mlmmj_api, caplog):
    check = mlmmj_check(sql_accounts, mlmmj_api, MLMMJADMIN_API_TIMEOUT=0.5)
    clock = FakeClock()
    check._mlmmj = MlmmjAdmin(check.settings, clock=clock)
    mlmmj_api.hang.set()
    attrs = {"sender": "list@example.com", "sasl_username": "subscriber@other.org"}
    with caplog.at_level(logging.INFO, logger="apd.mlmmjadmin"):
        started = time.monotonic()
        assert ask(check, sql_accounts, **attrs) == MISMATCH  # a failure counts as "not a subscriber"
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert ask(check, sql_accounts, **attrs) == MISMATCH  # during the back-off: not asked at all
        assert time.monotonic() - started < 0.3
        clock.now += 1.0
        assert ask(check, sql_accounts, **attrs) == MISMATCH  # asked again, still hung
        mlmmj_api.hang.clear()
        clock.now += 5.0
        assert ask(check, sql_accounts, **attrs) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unavailable" in m]) == 1, messages  # once per outage
    assert len([m for m in messages if "reachable again" in m]) == 1, messages


def test_unreachable_mlmmjadmin_is_not_a_subscriber(sql_accounts, caplog):
    check = make_check(sql_accounts, mlmmjadmin_api_endpoint="http://127.0.0.1:9/api", mlmmjadmin_api_auth_token=TOKEN)
    with caplog.at_level(logging.ERROR, logger="apd.mlmmjadmin"):
        assert ask(check, sql_accounts, sender="list@example.com", sasl_username="subscriber@other.org") == MISMATCH
    assert "mlmmjadmin API http://127.0.0.1:9/api is unavailable" in caplog.text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- SPF (dnsmasq: forged.test lists 192.0.2.150)


def test_forged_sender_listed_in_spf_is_allowed(sql_accounts, dns_server):
    check = make_check(sql_accounts, CHECK_SPF_IF_LOGIN_MISMATCH=True, DNS_NAMESERVERS=[dns_server.nameserver])
    attrs = {"sender": "news@forged.test", "recipient": "user@forged.test"}  # SD == RD: local
    assert ask(check, sql_accounts, client_address="192.0.2.150", **attrs) is None
    assert ask(check, sql_accounts, client_address="192.0.2.151", **attrs) == FORGED
    off = make_check(sql_accounts, CHECK_SPF_IF_LOGIN_MISMATCH=False, DNS_NAMESERVERS=[dns_server.nameserver])
    assert ask(off, sql_accounts, client_address="192.0.2.150", **attrs) == FORGED
    check.close()


def test_spf_is_evaluated_once_per_request(sql_accounts, dns_server):
    check = make_check(sql_accounts, CHECK_SPF_IF_LOGIN_MISMATCH=True, DNS_NAMESERVERS=[dns_server.nameserver])
    request = parse(sender="news@forged.test", recipient="user@forged.test", client_address="192.0.2.150")
    ctx = RequestContext(request, sql_accounts, TrustedClients([]))
    calls = []
    assert check.check(request, ctx) is None
    assert ctx.spf_allows("forged.test", lambda *args: calls.append(args) or False) is True  # the memo answers
    assert calls == []

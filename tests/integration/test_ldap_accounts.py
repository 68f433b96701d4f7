"""LdapAccounts against a real slapd seeded with an iRedMail-like DIT (tests/helpers/slapd.py)."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from apd.errors import StoreUnavailable
from apd.settings import defaults
from tests.helpers.servers import require_module, unavailable

ldap = require_module("ldap")
from apd.store.ldap import BIND_REFUSED, LdapAccounts  # noqa: E402

pytestmark = pytest.mark.servers

LOGGER = "apd.store.ldap"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(server, clock=None, hostname="mx.apd.test", **overrides) -> LdapAccounts:
    settings = defaults().replace(**server.settings(**overrides))
    return LdapAccounts(settings, clock=clock or time.monotonic, hostname=hostname)


@pytest.fixture
def accounts(slapd_server):
    acc = make(slapd_server)
    yield acc
    acc.close()


# --- the account-side contract (same cases as SqlAccounts)

LOCAL_DOMAIN_CASES = [
    # domain, include_alias, include_backupmx, expected
    ("example.com", True, True, True),
    ("EXAMPLE.com", True, True, True),
    ("example.com", False, False, True),
    ("alias.example.com", True, True, True),
    ("alias.example.com", False, True, False),
    ("alias2.example.com", True, True, True),  # stored upper-case; LDAP compares ignoring case
    ("backupmx.com", True, True, True),
    ("backupmx.com", True, False, False),
    ("alias.backupmx.com", True, True, True),
    # LDAP differs from SQL here (as in iRedAPD): the backup-MX filter applies to the entry
    # holding the alias name, so an alias of a backup-MX domain is excluded with it.
    ("alias.backupmx.com", True, False, False),
    ("disabled.com", True, True, False),
    ("alias.disabled.com", True, True, False),  # alias of an inactive domain
    ("nomail.com", True, True, False),  # no enabledService=mail
    ("aliasonly-alias.com", True, True, True),  # ldap.md §3.2: domainalias service not required
    ("unknown.com", True, True, False),
    ("sub.example.com", True, True, False),
    ("not a domain", True, True, False),
    ("", True, True, False),
    ("mx.apd.test", True, True, True),  # the server's own host name (ldap.md §3.2 step 2)
]


@pytest.mark.parametrize("domain,include_alias,include_backupmx,expected", LOCAL_DOMAIN_CASES)
def test_is_local_domain(accounts, domain, include_alias, include_backupmx, expected):
    assert accounts.is_local_domain(domain, include_alias, include_backupmx) is expected


ALIAS_TARGET_CASES = [
    ("alias.example.com", "example.com"),
    ("ALIAS.Example.COM", "example.com"),
    ("alias2.example.com", "example.com"),
    ("aliasonly-alias.com", "aliasonly.com"),
    ("alias.backupmx.com", "backupmx.com"),
    ("example.com", None),
    ("alias.disabled.com", None),
    ("unknown.com", None),
    ("not a domain", None),
    ("", None),
]


@pytest.mark.parametrize("domain,expected", ALIAS_TARGET_CASES)
def test_alias_target(accounts, domain, expected):
    assert accounts.alias_target(domain) == expected


def test_alias_targets_of_many_domains_in_one_search(accounts):
    searches = []
    search = accounts.search
    accounts.search = lambda *args, **kwargs: searches.append(args) or search(*args, **kwargs)
    domains = [domain for domain, _ in ALIAS_TARGET_CASES]
    found = accounts.alias_targets(domains)
    assert len(searches) == 1
    assert found == {domain.lower(): expected for domain, expected in ALIAS_TARGET_CASES}


# --- ldap.md §3.1 get_account


def test_get_account_by_mail(accounts, slapd_server):
    dn, attrs = accounts.get_account("user@example.com", ["objectClass", "shadowLastChange"])
    assert dn == f"mail=user@example.com,ou=Users,domainName=example.com,{slapd_server.basedn}"
    assert attrs == {
        "objectClass": ["inetOrgPerson", "shadowAccount", "amavisAccount", "mailUser"],
        "shadowLastChange": ["19000"],
    }


def test_get_account_by_shadow_address_and_case(accounts):
    dn, attrs = accounts.get_account("USER.Alias@example.com", ["mail"])
    assert dn.startswith("mail=user@example.com,")
    assert attrs == {"mail": ["user@example.com"]}


def test_get_account_all_attributes(accounts):
    dn, attrs = accounts.get_account("user@example.com")
    assert attrs["memberOfGroup"] == ["list@example.com"]
    assert attrs["enabledService"] == ["mail", "smtp", "shadowaddress"]
    assert "userPassword" not in attrs  # the vmail account cannot read it


@pytest.mark.parametrize(
    "address,dn_prefix",
    [
        ("disabled@example.com", "mail=disabled@example.com,ou=Users,"),  # accountStatus is not checked
        ("list@example.com", "mail=list@example.com,ou=Groups,"),
        ("list.alias@example.com", "mail=list@example.com,ou=Groups,"),
        ("alias@example.com", "mail=alias@example.com,ou=Aliases,"),
    ],
)
def test_get_account_finds(accounts, address, dn_prefix):
    dn, attrs = accounts.get_account(address, ["mail"])
    assert dn.startswith(dn_prefix)


@pytest.mark.parametrize(
    "address",
    [
        "nodomain@example.com",  # domainStatus=disabled hides the entry
        "external@other.org",  # mailExternalUser is not an account class here
        "user+ext@example.com",
        "nobody@example.com",
        "",
    ],
)
def test_get_account_not_found(accounts, address):
    assert accounts.get_account(address, ["mail"]) == (None, None)


# --- ldap.md §3.4 - §3.6


def test_primary_and_alias_domains(accounts):
    expected = ["example.com", "alias.example.com", "alias2.example.com"]
    assert accounts.primary_and_alias_domains("example.com") == expected
    assert accounts.primary_and_alias_domains("Alias.example.com") == expected
    assert accounts.primary_and_alias_domains("backupmx.com") == ["backupmx.com", "alias.backupmx.com"]
    assert accounts.primary_and_alias_domains("unknown.com") == []
    assert accounts.primary_and_alias_domains("not a domain") == []


def test_list_members(accounts):
    members = accounts.list_members("list@example.com", "example.com")
    assert sorted(members) == [
        "external@other.org",
        "m2@example.com",
        "member2@example.com",
        "user.alias@example.com",
        "user@example.com",
    ]
    assert accounts.list_members("nolist@example.com", "example.com") == []
    # the list's domain written as an alias domain: no domain entry, so "don't know"
    assert accounts.list_members("list@alias.example.com", "alias.example.com") is None


def test_list_members_and_moderators(accounts):
    allowed = accounts.list_members_and_moderators("list@example.com", "example.com")
    # members of any status, the list's own addresses and its listAllowedUser
    assert "inactive-member@example.com" in allowed
    assert "allowed@other.org" in allowed
    assert {"list@example.com", "list.alias@example.com", "user@example.com"} <= set(allowed)
    assert accounts.list_members_and_moderators("list@x.org", "alias.example.com") is None


def test_shadow_addresses_of(accounts):
    assert sorted(accounts.shadow_addresses_of(["user.alias@example.com", "x@example.com"], "example.com")) == [
        "user.alias@example.com",
        "user@example.com",
    ]
    assert accounts.shadow_addresses_of([], "example.com") == []


@pytest.mark.parametrize(
    "sender,sasl,strictly,list_member,expected",
    [
        ("user.alias@example.com", "user@example.com", True, False, True),
        ("user.alias@example.com", "user@example.com", False, True, False),
        ("list@example.com", "user@example.com", False, True, True),
        ("list@example.com", "user.alias@example.com", False, True, True),
        ("list@example.com", "user@example.com", True, False, False),
        ("alias@example.com", "user@example.com", False, True, True),
        ("alias@example.com", "user@example.com", True, True, True),
        ("alias@example.com", "member2@example.com", True, True, False),
        ("user.alias@example.com", "user@example.com", False, False, False),
    ],
)
def test_sender_login_allowed(accounts, sender, sasl, strictly, list_member, expected):
    assert accounts.sender_login_allowed(sender, sasl, strictly, list_member) is expected


def test_has_active_mlmmj_lists(accounts):
    assert accounts.has_active_mlmmj_lists() is True


# --- escaping: hostile values match nothing and raise nothing

HOSTILE = [
    "*",
    "*)(uid=*",
    "a)(|(objectClass=*",
    "*)(objectClass=*))(|(mail=*",
    "user@example.com)(mail=*",
    "*@example.com",
    "a\x00b",
    "\\",
    "\\2a",
    "(",
    ")",
    "user@example.com\x00",
    "%",
    "_.org",
    "x.org' OR '1'='1",
]


def test_wildcard_unescaped_would_match(accounts):
    """The hostile values are dangerous: pasted raw, they match every entry."""
    raw = accounts.search(accounts.basedn, ldap.SCOPE_SUBTREE, "(&(mail=*)(|(mail=*)(uid=*)))", ["dn"])
    assert len(raw) > 3


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_match_nothing(accounts, value):
    assert accounts.get_account(value, ["dn"]) == (None, None)
    assert accounts.get_account(value + "@example.com", ["dn"]) == (None, None)
    assert accounts.list_members(value, "example.com") == []
    assert accounts.list_members_and_moderators(value, "example.com") == []
    assert accounts.shadow_addresses_of([value], "example.com") == []
    for strictly, member in ((True, False), (False, True), (True, True)):
        assert accounts.sender_login_allowed(value, value, strictly, member) is False
        assert accounts.sender_login_allowed("list@example.com", value, strictly, member) is False
    assert accounts.is_local_domain(value) is False
    assert accounts.alias_target(value) is None
    assert accounts.primary_and_alias_domains(value) == []


@pytest.mark.parametrize("value", ["*", "*)(x=*", "example.com)(", "a\x00", "\\"])
def test_hostile_domain_in_base_dn(accounts, value):
    """A hostile list domain becomes part of a base DN: escaped, it names no entry."""
    assert accounts.list_members("list@example.com", value) is None
    assert accounts.shadow_addresses_of(["user@example.com"], value) == []


# --- credentials, outages and timeouts


def test_bad_bind_password_is_logged_and_unavailable(slapd_server, caplog):
    clock = FakeClock()
    acc = make(slapd_server, clock=clock, ldap_bindpw="wrong")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with pytest.raises(StoreUnavailable):
            acc.is_local_domain("example.com")
        with pytest.raises(StoreUnavailable):  # backing off: fails fast, no second line
            acc.is_local_domain("example.com")
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == [BIND_REFUSED]


def test_bad_bind_dn_is_refused(slapd_server, caplog):
    acc = make(slapd_server, ldap_binddn=f"cn=nobody,{slapd_server.suffix}")
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(StoreUnavailable):
        acc.get_account("user@example.com")
    assert BIND_REFUSED in caplog.text


def test_other_bind_errors_are_logged_as_bind_failed(slapd_server, caplog):
    acc = make(slapd_server, ldap_bindpw="")  # an unauthenticated bind: slapd is unwilling
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(StoreUnavailable):
        acc.is_local_domain("example.com")
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 1 and messages[0].startswith("LDAP bind failed: "), messages
    assert messages[0] != BIND_REFUSED


def test_connection_is_reused(accounts):
    accounts.is_local_domain("example.com")
    conn = accounts._conn
    accounts.alias_target("alias.example.com")
    accounts.get_account("user@example.com", ["mail"])
    assert accounts._conn is conn


def test_child_after_fork_opens_its_own_connection(accounts):
    assert accounts.is_local_domain("example.com")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: answer through the pipe, never return into pytest
        try:
            answer = accounts.is_local_domain("example.com") and accounts.alias_target("alias.example.com")
            os.write(write_end, str(answer).encode())
            accounts.close()
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 100) == b"example.com"
    os.close(read_end)
    # the parent's connection was neither shared nor unbound by the child
    assert accounts.is_local_domain("backupmx.com")


def test_restart_unavailable_then_recovers_without_new_object(slapd_server, caplog):
    clock = FakeClock()
    acc = make(slapd_server, clock=clock)
    assert acc.is_local_domain("example.com") is True
    with caplog.at_level(logging.INFO, logger=LOGGER):
        slapd_server.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                acc.is_local_domain("example.com")
            with pytest.raises(StoreUnavailable):
                acc.alias_target("alias.example.com")
            clock.now += 60  # back-off over, server still down: tries again, no new log line
            with pytest.raises(StoreUnavailable):
                acc.get_account("user@example.com")
            assert time.monotonic() - started < 3
            assert not acc.available
        finally:
            slapd_server.start()
        clock.now += 60
        assert acc.is_local_domain("example.com") is True
        assert acc.alias_target("alias.example.com") == "example.com"
        assert acc.available
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"LDAP server {slapd_server.uri} is unavailable")
    assert messages[1] == f"LDAP server {slapd_server.uri} is reachable again"
    acc.close()


def test_restart_between_requests_is_invisible(slapd_server, caplog):
    acc = make(slapd_server)
    assert acc.is_local_domain("example.com") is True
    slapd_server.stop()
    slapd_server.start()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert acc.is_local_domain("example.com") is True  # the dead connection is replaced silently
    assert not [r for r in caplog.records if r.name == LOGGER]
    acc.close()


def test_search_on_hung_server_is_bounded(slapd_server):
    clock = FakeClock()
    acc = make(slapd_server, clock=clock, LDAP_TIMEOUT=0.5)
    assert acc.is_local_domain("example.com") is True
    slapd_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            acc.is_local_domain("example.com")
        assert time.monotonic() - started < 2.0
        # a new connection to the hung server is bounded too (bind waits at most the timeout)
        fresh = make(slapd_server, LDAP_TIMEOUT=0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            fresh.get_account("user@example.com")
        assert time.monotonic() - started < 2.0
    finally:
        slapd_server.resume()
    clock.now += 60
    assert acc.is_local_domain("example.com") is True
    acc.close()


def test_silent_listener_is_bounded(slapd_server):
    """A peer that accepts TCP but never speaks LDAP: connect + bind give up after LDAP_TIMEOUT."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        uri = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
        acc = make(slapd_server, ldap_uri=uri, LDAP_TIMEOUT=0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            acc.is_local_domain("example.com")
        assert time.monotonic() - started < 2.0


def test_nothing_listening_fails_fast(slapd_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        acc = make(slapd_server, ldap_uri=f"ldap://127.0.0.1:{port}")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            acc.is_local_domain("example.com")
        assert time.monotonic() - started < 1.0


def test_starttls(slapd_server):
    if not slapd_server.tls:
        unavailable("slapd offers no StartTLS: its certificate was not made (openssl missing or failed)")
    acc = make(slapd_server, ldap_enable_tls=True)
    assert acc.is_local_domain("example.com") is True
    assert acc._conn.get_option(ldap.OPT_X_TLS_VERSION)  # the session really is encrypted
    assert acc.get_account("user.alias@example.com", ["mail"])[1] == {"mail": ["user@example.com"]}
    acc.close()

"""ldap_maillist_access_policy against a real slapd with iRedMail's schema (plugins.md, ldap.md §3.6).

The lists live in a domain of their own (``lists.org``), added for this module and removed
afterwards, so the shared seed other tests count on stays as it is.
"""

from __future__ import annotations

import pytest

from apd import replies
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.settings import defaults
from apd.store import Store
from tests.helpers.servers import require_module

ldap = require_module("ldap")
from apd.checks.ldap_maillist_access_policy import LdapMaillistAccessPolicy  # noqa: E402
from apd.store.ldap import LdapAccounts  # noqa: E402

pytestmark = pytest.mark.servers

REJECT = replies.REJECT_NOT_AUTHORIZED
INACTIVE = replies.REJECT
USER_CLASSES = ["inetOrgPerson", "shadowAccount", "amavisAccount", "mailUser"]


def entries(basedn: str) -> list[tuple[str, dict]]:
    def domain(name: str, **attrs) -> tuple[str, dict]:
        entry = {
            "objectClass": ["mailDomain"],
            "domainName": [name],
            "accountStatus": ["active"],
            "enabledService": ["mail", "domainalias"],
        }
        entry.update(attrs)
        return f"domainName={name},{basedn}", entry

    def ou(name: str, dom: str = "lists.org") -> tuple[str, dict]:
        return f"ou={name},domainName={dom},{basedn}", {"objectClass": ["organizationalUnit"], "ou": [name]}

    def user(mail: str, **attrs) -> tuple[str, dict]:
        local = mail.split("@")[0]
        entry = {
            "objectClass": USER_CLASSES,
            "mail": [mail],
            "uid": [local],
            "cn": [local],
            "sn": [local],
            "accountStatus": ["active"],
            "enabledService": ["mail", "smtp", "shadowaddress"],
        }
        entry.update(attrs)
        return f"mail={mail},ou=Users,domainName=lists.org,{basedn}", entry

    def mail_list(mail: str, **attrs) -> tuple[str, dict]:
        entry = {"objectClass": ["mailList"], "mail": [mail], "accountStatus": ["active"], "enabledService": ["mail"]}
        entry.update(attrs)
        return f"mail={mail},ou=Groups,domainName=lists.org,{basedn}", entry

    return [
        domain("lists.org", domainAliasName=["alias-lists.org"]),
        *(ou(name) for name in ("Users", "Groups", "Aliases", "Externals")),
        domain("partner.org", domainAliasName=["alias-partner.org"]),
        user(
            "member@lists.org", memberOfGroup=["members@lists.org", "mm@lists.org"], shadowAddress=["m.alias@lists.org"]
        ),
        user(
            "inactive-member@lists.org", memberOfGroup=["members@lists.org", "mm@lists.org"], accountStatus=["disabled"]
        ),
        user("allowed@lists.org", shadowAddress=["allowed.alias@lists.org"]),
        user("allowed2@lists.org", shadowAddress=["allowed2.alias@lists.org"]),
        user("user@lists.org"),
        (
            f"mail=ext-member@external.org,ou=Externals,domainName=lists.org,{basedn}",
            {
                "objectClass": ["mailExternalUser"],
                "mail": ["ext-member@external.org"],
                "memberOfGroup": ["members@lists.org"],
                "accountStatus": ["active"],
            },
        ),
        mail_list("public@lists.org", accessPolicy=["public"]),
        mail_list("nopolicy@lists.org"),
        mail_list("domain@lists.org", accessPolicy=["domain"]),
        mail_list("subdomain@lists.org", accessPolicy=["SubDomain"]),
        mail_list(
            "members@lists.org",
            accessPolicy=["MembersOnly"],
            shadowAddress=["members.alias@lists.org"],
            listModerator=["mod@external.org"],
            listOwner=["owner@external.org"],
            listAllowedUser=["friend@external.org", "*@wild.org"],
        ),
        mail_list(
            "moderators@lists.org",
            accessPolicy=["moderatorsonly"],
            listAllowedUser=["allowed@lists.org", "allowed2@lists.org", "partner.org"],
        ),
        mail_list("allowedonly@lists.org", accessPolicy=["allowedonly"], listAllowedUser=["allowed@lists.org"]),
        mail_list("mm@lists.org", accessPolicy=["membersandmoderatorsonly"], listAllowedUser=["mmallowed@ext.org"]),
        mail_list("mlmmj@lists.org", accessPolicy=["membersonly"], enabledService=["mail", "mlmmj"]),
        mail_list("inactive@lists.org", accessPolicy=["public"], accountStatus=["disabled"]),
        (
            f"mail=alias@lists.org,ou=Aliases,domainName=lists.org,{basedn}",
            {
                "objectClass": ["mailAlias"],
                "mail": ["alias@lists.org"],
                "accountStatus": ["active"],
                "accessPolicy": ["membersonly"],
            },
        ),
    ]


@pytest.fixture(scope="module")
def directory(slapd_server):
    added = []
    try:
        for dn, attrs in entries(slapd_server.basedn):
            slapd_server.add(dn, attrs)
            added.append(dn)
        yield slapd_server
    finally:
        for dn in reversed(added):
            slapd_server.delete(dn)


@pytest.fixture
def store(directory):
    settings = defaults().replace(backend="ldap", **directory.settings())
    accounts = LdapAccounts(settings, hostname="mx.apd.test")
    store = Store(None, None, None, accounts)
    store.settings = settings
    yield store
    accounts.close()


def ask(store, sender: str, recipient: str, sasl_username: str = "") -> str | None:
    request = PolicyRequest.build(
        {
            "request": "smtpd_access_policy",
            "protocol_state": "RCPT",
            "client_address": "198.51.100.7",
            "sender": sender,
            "recipient": recipient,
            "sasl_username": sasl_username,
        }
    )
    return LdapMaillistAccessPolicy(store.settings, store).check(
        request, RequestContext(request, store, TrustedClients([]))
    )


CASES = [
    # sender, recipient, sasl_username, expected
    ("user@external.org", "public@lists.org", "", None),
    ("user@external.org", "nopolicy@lists.org", "", None),  # no accessPolicy: public
    ("user@external.org", "domain@lists.org", "", REJECT),
    ("user@lists.org", "domain@lists.org", "", None),
    ("user@alias-lists.org", "domain@lists.org", "", None),  # an alias name of the domain
    ("user@sub.lists.org", "domain@lists.org", "", REJECT),
    ("user@sub.lists.org", "subdomain@lists.org", "", None),
    ("user@external.org", "subdomain@lists.org", "", REJECT),
    ("member@lists.org", "members@lists.org", "", None),
    ("member+tag@lists.org", "members@lists.org", "", None),
    ("m.alias@lists.org", "members@lists.org", "", None),  # a member's shadowAddress
    ("ext-member@external.org", "members@lists.org", "", None),  # mailExternalUser member
    ("inactive-member@lists.org", "members@lists.org", "", REJECT),
    ("user@lists.org", "members@lists.org", "", REJECT),
    ("user@external.org", "members@lists.org", "", REJECT),
    ("mod@external.org", "members@lists.org", "", None),  # listModerator
    ("owner@external.org", "members@lists.org", "", None),  # listOwner
    ("friend@external.org", "members@lists.org", "", None),  # listAllowedUser
    ("anyone@wild.org", "members@lists.org", "", None),  # listAllowedUser *@wild.org
    ("", "members@lists.org", "", REJECT),
    ("x@external.org", "members@lists.org", "members@lists.org", None),  # the list itself sending
    # apd: the list's other addresses are checked as the list (iRedAPD let these through)
    ("user@external.org", "members+tag@lists.org", "", REJECT),
    ("member@lists.org", "members+tag@lists.org", "", None),
    ("user@external.org", "members@alias-lists.org", "", REJECT),
    ("member@lists.org", "members@alias-lists.org", "", None),
    ("user@external.org", "members.alias@lists.org", "", REJECT),
    ("member@lists.org", "members.alias@lists.org", "", None),
    # moderatorsonly: listAllowedUser, widened for authenticated senders
    ("allowed@lists.org", "moderators@lists.org", "", None),
    ("allowed.alias@lists.org", "moderators@lists.org", "allowed@lists.org", None),
    ("allowed2.alias@lists.org", "moderators@lists.org", "allowed2@lists.org", None),  # iRedAPD skipped it
    ("allowed.alias@lists.org", "moderators@lists.org", "", REJECT),  # needs SMTP AUTH
    ("user@partner.org", "moderators@lists.org", "", None),  # a listed domain
    ("user@alias-partner.org", "moderators@lists.org", "user@alias-partner.org", None),  # its alias name
    ("user@alias-partner.org", "moderators@lists.org", "", REJECT),
    ("user@lists.org", "moderators@lists.org", "user@lists.org", REJECT),
    ("allowed.alias@lists.org", "allowedonly@lists.org", "allowed@lists.org", None),
    ("user@lists.org", "allowedonly@lists.org", "user@lists.org", REJECT),
    ("member@lists.org", "mm@lists.org", "", None),
    ("inactive-member@lists.org", "mm@lists.org", "", None),  # no status filter here (ldap.md §3.6)
    ("mmallowed@ext.org", "mm@lists.org", "", None),
    ("user@external.org", "mm@lists.org", "", REJECT),
    ("user@external.org", "mlmmj@lists.org", "", None),  # mlmmj enforces membersonly itself
    ("user@external.org", "inactive@lists.org", "", INACTIVE),
    ("member@lists.org", "inactive@lists.org", "", INACTIVE),
    ("user@external.org", "alias@lists.org", "", None),  # a mailAlias, not a list
    ("user@external.org", "user@lists.org", "", None),
    ("user@external.org", "nobody@lists.org", "", None),
]


def test_maillist_access_policy(store):
    answers = [(s, r, u, ask(store, s, r, u)) for s, r, u, _ in CASES]
    assert answers == CASES


HOSTILE_SENDERS = [
    "*",
    "*@lists.org",
    "member@lists.org)(mail=*",
    "*)(memberOfGroup=*",
    "x@external.org)(|(objectClass=*",
    "member@lists.org\x00",
    "\\2a@lists.org",
]


@pytest.mark.parametrize("sender", HOSTILE_SENDERS)
def test_ldap_injection_in_sender_changes_nothing(store, sender):
    for recipient in ("members@lists.org", "mm@lists.org", "domain@lists.org"):
        expected = None if recipient == "domain@lists.org" and sender.endswith("@lists.org") else REJECT
        assert ask(store, sender, recipient) == expected, recipient
    assert ask(store, sender, "moderators@lists.org", sender) == REJECT


@pytest.mark.parametrize("recipient", ["members@lists.org)(mail=*", "*", "*@lists.org", "members@lists.org\x00"])
def test_ldap_injection_in_recipient_finds_no_list(store, recipient):
    assert ask(store, "user@external.org", recipient) is None


def test_searches_per_request(store):
    """membersonly costs three searches: the list entry, the domain's names, the members."""
    searches = []
    search = store.accounts.search
    store.accounts.search = lambda *args, **kwargs: searches.append(args[2]) or search(*args, **kwargs)
    assert ask(store, "user@external.org", "members@lists.org") == REJECT
    assert len(searches) == 3, searches


def test_through_a_real_apd(apd_factory, directory, mariadb_server):
    from tests.helpers.policy_client import rcpt

    mariadb_server.truncate("apd")
    settings = mariadb_server.apd_settings("apd", backend="ldap")
    settings.update(directory.settings(), plugins=["reject_null_sender", "ldap_maillist_access_policy"], workers=1)
    apd = apd_factory(**settings)
    with apd.client() as client:
        for sender, recipient, sasl_username, expected in [
            ("user@external.org", "members@lists.org", "", REJECT),
            ("Member+Tag@Lists.org", "MEMBERS@lists.org", "", "DUNNO"),  # Postfix's case: apd lowercases
            ("user@external.org", "members@alias-lists.org", "", REJECT),
            ("allowed.alias@lists.org", "moderators@lists.org", "allowed@lists.org", "DUNNO"),
            ("user@external.org", "inactive@lists.org", "", INACTIVE),
            # filter syntax an address may hold past its valid prefix (parentheses and * it may not)
            ("member@lists.org\\2a", "members@lists.org", "", REJECT),
            ("member@lists.org\\", "members@lists.org", "member@lists.org\\2a", REJECT),
            ("user@external.org", "members@lists.org\\2a", "", "DUNNO"),
        ]:
            reply = client.ask(**rcpt(sender=sender, recipient=recipient, sasl_username=sasl_username))
            assert reply == expected, (sender, recipient)

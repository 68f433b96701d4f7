"""The pure alias and mailing-list access decisions (apd/access_policy.py, plugins.md)."""

from __future__ import annotations

import pytest

from apd.access_policy import (
    ModeratorExpansion,
    Recipient,
    Resolved,
    Sender,
    alias_policy_allows,
    label_suffixes,
    ldap_domain_allows,
    ldap_listed,
    ldap_moderators_allow,
    ldap_subdomain_allows,
    listed_for,
    lookup_addresses,
    ml_accounts,
    ml_policy_allows,
    moderator_expansion,
    normalise_policy,
    resolve,
    sender_forms,
)


def sender(address: str) -> Sender:
    return Sender(address, address.split("@", 1)[1] if "@" in address else "")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", "public"),
        (None, "public"),
        ("  ", "public"),
        ("Public", "public"),
        ("DOMAIN", "domain"),
        ("SubDomain", "subdomain"),
        ("MembersOnly", "membersonly"),
        ("allowedonly", "moderatorsonly"),
        ("AllowedOnly", "moderatorsonly"),
        ("moderatorsonly", "moderatorsonly"),
        ("MembersAndModeratorsOnly", "membersandmoderatorsonly"),
        ("weird", "weird"),
    ],
)
def test_normalise_policy(value, expected):
    assert normalise_policy(value) == expected


# --- sql_alias_access_policy: alias@test.com (alias domain alias.com -> test.com)

RCPT = Recipient("alias@test.com", "test.com")
RCPT_VIA_ALIAS_DOMAIN = Recipient("alias@alias.com", "alias.com", "test.com")
MEMBERS = {"member@test.com", "outside@external.com"}
MODERATORS = {"mod@test.com", "*@wild.org"}


def resolved(policy: str, recipient: Recipient = RCPT, rcpt_alias_domains: tuple[str, ...] = ()) -> Resolved:
    real_address = recipient.target_address or recipient.address
    return Resolved(policy, real_address, recipient.alias_target or recipient.domain, rcpt_alias_domains)


ALIAS_CASES = [
    # policy, sender, rcpt_alias_domains (the sender's domain when it is an alias of realRD), allowed
    ("public", "user@external.com", (), True),
    ("public", "", (), True),
    ("domain", "user@external.com", (), False),
    ("domain", "user@test.com", (), True),
    ("domain", "user@sub.test.com", (), False),
    ("domain", "user@alias.com", ("alias.com",), True),
    ("domain", "", (), False),  # a null sender has no domain
    ("subdomain", "user@external.com", (), False),
    ("subdomain", "user@test.com", (), True),
    ("subdomain", "user@sub.test.com", (), True),
    ("subdomain", "user@deep.sub.test.com", (), True),
    ("subdomain", "user@eviltest.com", (), False),
    ("subdomain", "user@test.com.evil.org", (), False),
    ("subdomain", "user@alias.com", ("alias.com",), True),
    ("subdomain", "", (), False),
    ("membersonly", "user@test.com", (), False),  # local, not a member
    ("membersonly", "user@external.com", (), False),
    ("membersonly", "member@test.com", (), True),
    ("membersonly", "outside@external.com", (), True),
    ("membersonly", "member@alias.com", ("alias.com",), True),  # alias-domain form of a member
    ("membersonly", "member@alias.com", (), False),  # alias.com not an alias of realRD
    ("membersonly", "mod@test.com", (), False),
    ("membersonly", "", (), False),
    ("moderatorsonly", "user@test.com", (), False),
    ("moderatorsonly", "member@test.com", (), False),
    ("moderatorsonly", "mod@test.com", (), True),
    ("moderatorsonly", "anyone@wild.org", (), True),  # *@wild.org
    ("moderatorsonly", "anyone@sub.wild.org", (), False),
    ("moderatorsonly", "mod@alias.com", ("alias.com",), True),
    ("moderatorsonly", "", (), False),
    ("membersandmoderatorsonly", "user@external.com", (), False),
    ("membersandmoderatorsonly", "member@test.com", (), True),
    ("membersandmoderatorsonly", "mod@test.com", (), True),
    ("membersandmoderatorsonly", "x@wild.org", (), True),
    ("membersandmoderatorsonly", "member@alias.com", ("alias.com",), True),
    ("membersandmoderatorsonly", "mod@alias.com", ("alias.com",), True),
    ("membersandmoderatorsonly", "", (), False),
    ("unknownpolicy", "user@external.com", (), True),  # unsupported: DUNNO
]


@pytest.mark.parametrize("policy,address,alias_domains,allowed", ALIAS_CASES)
def test_alias_policy(policy, address, alias_domains, allowed):
    real = resolved(policy, RCPT, alias_domains)
    assert alias_policy_allows(sender(address), RCPT, real, MEMBERS, MODERATORS) is allowed


@pytest.mark.parametrize(
    "policy,address,allowed",
    [
        ("domain", "user@test.com", True),  # SD == realRD
        ("domain", "user@alias.com", True),  # SD == RD
        ("domain", "user@external.com", False),
        ("subdomain", "user@sub.test.com", True),  # ends with '.'+realRD
        ("subdomain", "user@sub.alias.com", True),  # ends with '.'+RD
        ("membersonly", "member@test.com", True),
        ("membersonly", "user@test.com", False),
    ],
)
def test_alias_policy_of_an_alias_domain_recipient(policy, address, allowed):
    real = resolved(policy, RCPT_VIA_ALIAS_DOMAIN)
    assert alias_policy_allows(sender(address), RCPT_VIA_ALIAS_DOMAIN, real, MEMBERS, MODERATORS) is allowed


def test_alias_user_ok_tries_the_real_domain_too():
    """iRedAPD tries SN@RD only; with RD an alias domain the members are stored under realRD."""
    recipient = Recipient("alias@alias.com", "alias.com", "test.com")
    real = Resolved("membersonly", "alias@test.com", "test.com", ("other-alias.com",))
    assert alias_policy_allows(sender("member@other-alias.com"), recipient, real, MEMBERS, set()) is True


# --- sql_ml_access_policy


@pytest.mark.parametrize(
    "policy,address,moderator_or_owner,allowed",
    [
        ("public", "user@external.com", False, True),
        ("membersonly", "user@external.com", False, True),  # mlmmj enforces it
        ("moderatorsonly", "user@external.com", False, True),
        ("membersandmoderatorsonly", "user@external.com", False, True),
        ("domain", "user@external.com", False, False),
        ("domain", "user@external.com", True, True),  # a moderator or owner
        ("domain", "user@test.com", False, True),
        ("domain", "", False, False),
        ("subdomain", "user@sub.test.com", False, True),
        ("subdomain", "user@external.com", False, False),
        ("subdomain", "user@external.com", True, True),
        ("other", "user@external.com", False, True),
    ],
)
def test_ml_policy(policy, address, moderator_or_owner, allowed):
    assert ml_policy_allows(sender(address), RCPT, resolved(policy), moderator_or_owner) is allowed


def test_ml_accounts_include_the_real_list_address():
    real = Resolved("domain", "list@test.com", "test.com", ("sender-alias.com",))
    recipient = Recipient("list@alias.com", "alias.com", "test.com")
    assert ml_accounts(recipient, real) == ["list@alias.com", "list@test.com", "list@sender-alias.com"]


def test_listed_for_unites_the_accounts():
    rows = {"a@x.com": {"m1@x.com"}, "b@x.com": {"m2@x.com"}, "c@x.com": {"m3@x.com"}}
    assert listed_for(rows, ["a@x.com", "b@x.com", "none@x.com"]) == {"m1@x.com", "m2@x.com"}


# --- step 1: which row carries the policy


@pytest.mark.parametrize(
    "policies,recipient,sender_target,expected",
    [
        ({}, RCPT, None, None),
        ({"alias@test.com": ""}, RCPT, None, Resolved("public", "alias@test.com", "test.com", ())),
        ({"alias@test.com": "Domain"}, RCPT, "test.com", Resolved("domain", "alias@test.com", "test.com", ("a.com",))),
        ({"alias@test.com": "domain"}, RCPT, "other.com", Resolved("domain", "alias@test.com", "test.com", ())),
        # no row for R, RD an alias domain: the target's row, realRD the target
        (
            {"alias@test.com": "membersonly"},
            RCPT_VIA_ALIAS_DOMAIN,
            "test.com",
            Resolved("membersonly", "alias@test.com", "test.com", ("a.com",)),
        ),
        # R's own row wins over the target's
        (
            {"alias@alias.com": "public", "alias@test.com": "domain"},
            RCPT_VIA_ALIAS_DOMAIN,
            None,
            Resolved("public", "alias@alias.com", "alias.com", ()),
        ),
        ({"other@test.com": "domain"}, RCPT_VIA_ALIAS_DOMAIN, None, None),
    ],
)
def test_resolve(policies, recipient, sender_target, expected):
    assert resolve(policies, recipient, Sender("u@a.com", "a.com"), sender_target) == expected


def test_resolve_null_sender_has_no_alias_domains():
    assert resolve({"alias@test.com": "domain"}, RCPT, Sender("", ""), "test.com").rcpt_alias_domains == ()


def test_lookup_addresses_and_sender_forms():
    s = Sender("bob@alias.com", "alias.com")
    assert lookup_addresses(RCPT, s, None) == ["alias@test.com"]
    assert lookup_addresses(RCPT, s, "test.com") == ["alias@test.com", "alias@alias.com"]
    assert lookup_addresses(RCPT_VIA_ALIAS_DOMAIN, s, "test.com") == ["alias@alias.com", "alias@test.com"]
    assert sender_forms(RCPT, s) == ["bob@alias.com", "bob@test.com", "*@alias.com"]
    assert sender_forms(RCPT_VIA_ALIAS_DOMAIN, s) == ["bob@alias.com", "bob@test.com", "*@alias.com"]
    assert sender_forms(RCPT, Sender("", "")) == []


# --- ldap_maillist_access_policy


def test_label_suffixes():
    assert label_suffixes("a.b.c") == {".a.b.c", ".b.c", ".c"}
    assert label_suffixes("") == set()


ALLOWED = {"friend@other.org", "*@partner.org", "trusted.net", ".parent.edu", "user@example.com"}


@pytest.mark.parametrize(
    "address,moderators,allowed",
    [
        ("mod@example.com", {"mod@example.com"}, True),  # listModerator
        ("owner@example.com", {"owner@example.com"}, True),  # listOwner
        ("friend@other.org", set(), True),
        ("anyone@partner.org", set(), True),  # *@domain
        ("anyone@trusted.net", set(), True),  # bare domain
        ("anyone@sub.trusted.net", set(), False),  # a bare domain is not a parent
        ("anyone@x.parent.edu", set(), True),  # .parent.edu matches its subdomains
        ("anyone@parent.edu", set(), True),  # ".parent.edu" names the domain itself too
        ("stranger@other.org", set(), False),
        ("", {""}, False),
    ],
)
def test_ldap_listed(address, moderators, allowed):
    assert ldap_listed(sender(address), moderators, ALLOWED) is allowed


@pytest.mark.parametrize(
    "address,domain_ok,subdomain_ok",
    [
        ("u@example.com", True, True),
        ("u@alias.example.com", True, True),
        ("u@sub.example.com", False, True),
        ("u@notexample.com", False, False),
        ("u@external.com", False, False),
        ("", False, False),
    ],
)
def test_ldap_domain_rules(address, domain_ok, subdomain_ok):
    valid = ["example.com", "alias.example.com"]
    assert ldap_domain_allows(sender(address), valid) is domain_ok
    assert ldap_subdomain_allows(sender(address), valid) is subdomain_ok


def test_moderator_expansion_takes_every_item():
    """iRedAPD removes items from the list it walks: the second of two adjacent same-domain
    users (or a domain after a removed item) was skipped. apd classifies every item."""
    allowed = ["a@example.com", "b@example.com", "*@wild.org", "c@other.org", ".parent.net", "d.org", "e@example.com"]
    assert moderator_expansion(allowed, "example.com") == ModeratorExpansion(
        kept=("c@other.org",),
        users=("a@example.com", "b@example.com", "e@example.com"),
        domains=("parent.net", "d.org"),
    )
    assert moderator_expansion([], "example.com") == ModeratorExpansion((), (), ())


@pytest.mark.parametrize(
    "address,allowed",
    [
        ("c@other.org", True),
        ("alias-of-a@example.com", True),
        ("anyone@alias-of-d.org", True),
        ("x@example.com", False),
        ("", False),
    ],
)
def test_ldap_moderators_allow(address, allowed):
    expanded = {"c@other.org", "alias-of-a@example.com", "a@example.com", "alias-of-d.org", "d.org"}
    assert ldap_moderators_allow(sender(address), expanded) is allowed

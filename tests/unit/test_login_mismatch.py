"""Pure decisions of reject_sender_login_mismatch (apd/login_mismatch.py), one table per step."""

from __future__ import annotations

import pytest

from apd import replies
from apd.login_mismatch import (
    ASK_MLMMJ,
    LOOKUP,
    MismatchSettings,
    SenderRelations,
    counts_local_by_name,
    forged_sender_exempt,
    forged_verdict,
    login_verdict,
    mlmmj_verdict,
    real_sender,
    relations_verdict,
    same_user_in_alias_domain,
)
from apd.settings import defaults

FORGED = replies.REJECT_FORGED_SENDER
MISMATCH = replies.REJECT_SENDER_LOGIN_MISMATCH


def rules(**overrides) -> MismatchSettings:
    return MismatchSettings.from_settings(defaults().replace(**overrides))


def test_defaults_follow_the_spec():
    r = rules()
    assert (r.check_forged_sender, r.check_spf, r.strictly, r.list_member, r.mlmmj_api) == (
        True,
        True,
        True,
        False,
        False,
    )
    assert rules(mlmmjadmin_api_auth_token="t").mlmmj_api is True
    assert rules(mlmmjadmin_api_auth_token="t", mlmmjadmin_api_endpoint="").mlmmj_api is False
    # settings compare lowercased: requests arrive lowercased
    assert rules(ALLOWED_LOGIN_MISMATCH_SENDERS=["Boss@Example.COM"]).allowed_senders == {"boss@example.com"}


FORGED_EXEMPT_CASES = [
    # settings, sender, sender domain, trusted, exempt
    ({}, "user@example.com", "example.com", True, True),  # A.1 trusted client
    ({}, "user@example.com", "example.com", False, False),
    ({"CHECK_FORGED_SENDER": False}, "user@example.com", "example.com", False, True),  # A.2
    ({"ALLOWED_FORGED_SENDERS": ["user@example.com"]}, "user@example.com", "example.com", False, True),
    ({"ALLOWED_FORGED_SENDERS": ["user@example.com"]}, "other@example.com", "example.com", False, False),
    ({"ALLOWED_FORGED_SENDERS": ["example.com"]}, "anyone@example.com", "example.com", False, True),
    ({"ALLOWED_FORGED_SENDERS": ["example.com"]}, "anyone@sub.example.com", "sub.example.com", False, False),
    ({"ALLOWED_FORGED_SENDERS": ["noreply@*"]}, "noreply@example.com", "example.com", False, True),
    ({"ALLOWED_FORGED_SENDERS": ["noreply@*"]}, "noreply2@example.com", "example.com", False, False),
    ({"ALLOWED_FORGED_SENDERS": ["@example.com"]}, "user@example.com", "example.com", False, False),  # no such form
    ({"ALLOWED_FORGED_SENDERS": ["NoReply@Example.com"]}, "noreply@example.com", "example.com", False, True),
]


@pytest.mark.parametrize("overrides,sender,domain,trusted,exempt", FORGED_EXEMPT_CASES)
def test_forged_sender_exempt(overrides, sender, domain, trusted, exempt):
    assert forged_sender_exempt(rules(**overrides), sender, domain, trusted) is exempt


@pytest.mark.parametrize(
    "sender_domain,recipient_domain,expected",
    [
        ("example.com", "example.com", True),  # SD == RD is enough, hosted here or not
        ("", "example.com", False),  # the null sender is never local
        ("example.com", "other.org", None),  # the directory must tell
    ],
)
def test_counts_local_by_name(sender_domain, recipient_domain, expected):
    assert counts_local_by_name(sender_domain, recipient_domain) is expected


@pytest.mark.parametrize(
    "local,spf_allowed,expected",
    [(True, False, FORGED), (True, True, None), (False, False, None), (False, True, None)],
)
def test_forged_verdict(local, spf_allowed, expected):
    assert forged_verdict(local, spf_allowed) == expected


LOGIN_CASES = [
    # settings, sender, sasl username, expected
    ({}, "", "user@example.com", None),  # step 0: the null sender is reject_null_sender's
    ({}, "user@example.com", "user@example.com", None),  # B.1 (the +ext is already stripped)
    ({}, "other@example.com", "user@example.com", LOOKUP),  # STRICTLY is on by default
    ({"ALLOWED_LOGIN_MISMATCH_STRICTLY": False}, "other@example.com", "user@example.com", MISMATCH),  # B.2
    (
        {"ALLOWED_LOGIN_MISMATCH_STRICTLY": False, "ALLOWED_LOGIN_MISMATCH_LIST_MEMBER": True},
        "o@x.org",
        "u@x.org",
        LOOKUP,
    ),
    # B.3: a full login may send as anyone
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["boss@example.com"], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "anyone@other.org",
        "boss@example.com",
        None,
    ),
    # a bare domain: any user of it, any sender
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["example.com"], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "anyone@other.org",
        "user@example.com",
        None,
    ),
    # @domain: senders of the login's own domain only
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["@example.com"], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "other@example.com",
        "user@example.com",
        None,
    ),
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["@example.com"], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "anyone@other.org",
        "user@example.com",
        MISMATCH,
    ),
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["@example.com"], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "other@other.org",
        "user@other.org",
        MISMATCH,
    ),
    # @.: every user, same-domain senders
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["@."], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "other@other.org",
        "user@other.org",
        None,
    ),
    (
        {"ALLOWED_LOGIN_MISMATCH_SENDERS": ["@."], "ALLOWED_LOGIN_MISMATCH_STRICTLY": False},
        "anyone@example.com",
        "user@other.org",
        MISMATCH,
    ),
    # a non-empty list that does not match falls through to the lookups when they are on
    ({"ALLOWED_LOGIN_MISMATCH_SENDERS": ["boss@example.com"]}, "other@example.com", "user@example.com", LOOKUP),
]


@pytest.mark.parametrize("overrides,sender,login,expected", LOGIN_CASES)
def test_login_verdict(overrides, sender, login, expected):
    sender_domain, login_domain = sender.partition("@")[2], login.partition("@")[2]
    assert login_verdict(rules(**overrides), sender, sender_domain, login, login_domain) == expected


REAL_SENDER_CASES = [
    # strictly, sender, sasl domain, alias target of the sender domain, real sender, same user
    (True, "user@alias.example.com", "example.com", "example.com", "user@example.com", True),
    (True, "other@alias.example.com", "example.com", "example.com", "other@example.com", False),
    (True, "user@alias.other.org", "example.com", "other.org", "user@alias.other.org", False),  # another target
    (True, "user@other.org", "example.com", None, "user@other.org", False),
    (True, "user@example.com", "example.com", None, "user@example.com", False),  # same domain: no rewrite
    (False, "user@alias.example.com", "example.com", "example.com", "user@alias.example.com", False),
]


@pytest.mark.parametrize("strictly,sender,login_domain,target,real,same_user", REAL_SENDER_CASES)
def test_real_sender_and_same_user(strictly, sender, login_domain, target, real, same_user):
    r = rules(ALLOWED_LOGIN_MISMATCH_STRICTLY=strictly)
    sender_domain = sender.partition("@")[2]
    assert real_sender(r, sender, sender_domain, login_domain, target) == real
    assert same_user_in_alias_domain(r, sender, real, f"user@{login_domain}") is same_user


RELATION_CASES = [
    # mlmmj api configured, relations, expected
    (False, SenderRelations(), MISMATCH),
    (False, SenderRelations(allowed=True), None),
    (True, SenderRelations(allowed=True, mlmmj_list=True), None),
    (True, SenderRelations(mlmmj_list=True), ASK_MLMMJ),
    (False, SenderRelations(mlmmj_list=True), MISMATCH),  # no token: no API call
    (True, SenderRelations(), MISMATCH),
]


@pytest.mark.parametrize("api,relations,expected", RELATION_CASES)
def test_relations_verdict(api, relations, expected):
    r = rules(ALLOWED_LOGIN_MISMATCH_LIST_MEMBER=True, mlmmjadmin_api_auth_token="token" if api else "")
    assert relations_verdict(r, relations) == expected


def test_mlmmj_verdict():
    assert mlmmj_verdict(True) is None
    assert mlmmj_verdict(False) == MISMATCH

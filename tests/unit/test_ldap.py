"""LDAP pieces without a server: the filters of spec/ldap.md §3 (every value escaped, RFC 4515), ldap_uri."""

from __future__ import annotations

import pytest

from tests.helpers.servers import require_module

require_module("ldap")
from apd.store import ldap as f  # noqa: E402

D = "example.com"


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            (D, True, True),
            "(&(objectClass=mailDomain)(accountStatus=active)(enabledService=mail)"
            "(|(domainName=example.com)(domainAliasName=example.com)))",
        ),
        (
            (D, False, True),
            "(&(objectClass=mailDomain)(accountStatus=active)(enabledService=mail)(domainName=example.com))",
        ),
        (
            (D, True, False),
            "(&(objectClass=mailDomain)(accountStatus=active)(enabledService=mail)"
            "(|(domainName=example.com)(domainAliasName=example.com))(!(domainBackupMX=yes)))",
        ),
    ],
)
def test_local_domain_filter(args, expected):
    assert f.local_domain_filter(*args) == expected


def test_spec_filters_verbatim():
    assert f.alias_target_filter(D) == "(&(objectClass=mailDomain)(accountStatus=active)(domainAliasName=example.com))"
    assert f.primary_and_alias_filter(D) == (
        "(&(objectClass=mailDomain)(|(domainName=example.com)(domainAliasName=example.com)))"
    )
    assert f.account_filter("u@x.org") == (
        "(&(!(domainStatus=disabled))(|(mail=u@x.org)(shadowAddress=u@x.org))"
        "(|(objectClass=mailUser)(objectClass=mailList)(objectClass=mailAlias)))"
    )
    assert f.list_members_filter("l@x.org") == (
        "(&(accountStatus=active)(memberOfGroup=l@x.org)(|(objectclass=mailUser)(objectClass=mailExternalUser)))"
    )
    assert f.members_and_moderators_filter("l@x.org") == (
        "(|(&(memberOfGroup=l@x.org)(|(objectClass=mailUser)(objectClass=mailExternalUser)))"
        "(&(objectclass=mailList)(mail=l@x.org)))"
    )
    assert f.shadow_address_users_filter(["a@x.org", "b@x.org"]) == (
        "(&(objectClass=mailUser)(enabledService=shadowaddress)"
        "(|(mail=a@x.org)(shadowAddress=a@x.org)(mail=b@x.org)(shadowAddress=b@x.org)))"
    )


def test_login_mismatch_filter_combinations():
    alias = "(&(objectClass=mailUser)(mail=u@x.org)(shadowAddress=s@x.org))"
    member = "(&(objectClass=mailUser)(|(mail=u@x.org)(shadowAddress=u@x.org))(memberOfGroup=s@x.org))"
    alias_member = "(&(objectClass=mailAlias)(|(mail=s@x.org)(shadowAddress=s@x.org))(mailForwardingAddress=u@x.org))"
    assert f.login_mismatch_filter("s@x.org", "u@x.org", True, False) == alias
    assert f.login_mismatch_filter("s@x.org", "u@x.org", False, True) == f"(|{member}{alias_member})"
    assert f.login_mismatch_filter("s@x.org", "u@x.org", True, True) == f"(|{alias}{member}{alias_member})"
    assert f.login_mismatch_filter("s@x.org", "u@x.org", False, False) is None


@pytest.mark.parametrize(
    "value,escaped",
    [
        ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
        ("a)(|(objectClass=*", "a\\29\\28|\\28objectClass=\\2a"),
        ("a\x00b", "a\\00b"),
        ("back\\slash", "back\\5cslash"),
    ],
)
def test_values_are_escaped(value, escaped):
    assert f.account_filter(value).count(escaped) == 2
    assert f.alias_target_filter(value).endswith(f"(domainAliasName={escaped}))")
    assert f.alias_targets_filter([value, "b.org"]).endswith(f"(|(domainAliasName={escaped})(domainAliasName=b.org)))")
    built = f.login_mismatch_filter(value, value, True, True)
    assert "*" not in built and "\x00" not in built


@pytest.mark.parametrize(
    "value", ["ldap://127.0.0.1:389", "LDAPS://ldap.example.com", "ldapi://%2Frun%2Fslapd.sock", "ldap://a ldap://b"]
)
def test_ldap_uri_setting_accepts(value):
    from apd.settings import defaults

    assert defaults().replace(ldap_uri=value).ldap_uri == value


@pytest.mark.parametrize("value", ["127.0.0.1", "", "http://x", "ldap://a 127.0.0.1", 389])
def test_ldap_uri_setting_rejects(value):
    from apd.settings import ConfigError, defaults

    with pytest.raises(ConfigError, match="expected an LDAP URI"):
        defaults().replace(ldap_uri=value)

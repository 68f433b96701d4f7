"""apd/address.py: iRedAPD's address and IP tests with their quirks (protocol.md §6-§8)."""

from __future__ import annotations

import pytest

from apd.address import (
    classify,
    classify_strict,
    domain_of,
    is_domain,
    is_email,
    is_ipv4,
    is_local_account,
    is_strict_ip,
    is_tld_domain,
    is_valid_domain,
    is_valid_email,
    is_valid_wildcard_ipv4,
    is_wildcard_ipv4,
    policy_addresses,
    strip_extension,
    tried_wildcard,
    wildcard_ipv4,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("user@example.com", True),
        ("  user@example.com  ", True),  # surrounding whitespace is stripped first
        ("User.Name+tag@Sub.Example.COM", True),
        ("user@example.com>", True),  # prefix match only
        ("x@y.com'xx", True),
        ("a@b.com;drop", True),
        ("user@example.123", True),
        ("srs0=hash=tt=d.com=u@x.com", True),
        ("#hash@example.com", True),
        ("a/b&c=d@example.com", True),
        ("üser@exämple.com", True),  # \w is Unicode-aware
        ("user@localhost", False),  # no dot
        ("user@1.2.3.4", False),
        ("user@[1.2.3.4]", False),
        ("a@b.c", False),  # TLD needs two characters
        ("", False),
        ("   ", False),
        ("user", False),
        ("@example.com", False),
        (".user@example.com", False),
        ("a b@example.com", False),
        ("user@exa mple.com", False),
        *((f"us{c}er@example.com", False) for c in "~!$%^*()"),
        ("user@example.com~", False),  # forbidden anywhere, even after the matched prefix
        ("user@-example.com", True),
    ],
)
def test_is_email(value: str, expected: bool) -> None:
    assert is_email(value) is expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("example.com", True),
        ("Sub.Example.COM", True),
        ("-bad.com", True),
        ("a..b.com", True),
        ("example.com.", True),
        ("example", False),
        ("example.c", False),
        ("example.123", False),
        ("", False),
        *((f"ex{c}ample.com", False) for c in "~!#$%^&*()+\\/ "),
    ],
)
def test_is_domain(value: str, expected: bool) -> None:
    assert is_domain(value) is expected


@pytest.mark.parametrize(
    "value, expected", [("com", True), ("c", False), ("co-uk", True), ("x" * 25, True), ("", False)]
)
def test_is_tld_domain(value: str, expected: bool) -> None:
    assert is_tld_domain(value) is expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1.2.3.4", True),
        ("255.255.255.255", True),
        ("256.1.1.1", False),
        ("1.2.3", False),
        ("1.2.3.4 ", False),
        ("::1", False),
    ],
)
def test_is_ipv4(value: str, expected: bool) -> None:
    assert is_ipv4(value) is expected


@pytest.mark.parametrize(
    "value, expected", [("1.2.3.4", True), ("2001:db8::1", True), ("1.2.3.4/32", False), ("x", False)]
)
def test_is_strict_ip(value: str, expected: bool) -> None:
    assert is_strict_ip(value) is expected


@pytest.mark.parametrize(
    "value, expected",
    [("1.2.3.*", True), ("*.*.*.*", True), ("999.1.1.1", True), ("1.2.3", False), ("1.2.3.4/24", False)],
)
def test_is_wildcard_ipv4(value: str, expected: bool) -> None:
    assert is_wildcard_ipv4(value) is expected


@pytest.mark.parametrize(
    "address, domain",
    [("a@b.com", "b.com"), ("a@b@c.com", "b@c.com"), ("nodomain", "nodomain"), ("", ""), ("@x.org", "x.org")],
)
def test_domain_of(address: str, domain: str) -> None:
    assert domain_of(address) == domain


@pytest.mark.parametrize(
    "address, delimiters, expected",
    [
        ("user+a+b@d.com", ("+",), "user@d.com"),
        ("user@d.com", ("+",), "user@d.com"),
        ("a+b-c@d.com", ("-", "+"), "a+b@d.com"),
        ("a+b-c@d.com", ("+", "-"), "a@d.com"),
        ("a-b-c@d.com", ["-"], "a@d.com"),
        ("user+x@localhost", ("+",), "user+x@localhost"),  # not an email: unchanged
        ("", ("+",), ""),
        ("+x@d.com", ("+",), "+x@d.com"),  # not an email: a local part cannot start with '+'
        ("u+@d.com", ("+",), "u@d.com"),
        ("user+x@d.com", ("", "+"), "user@d.com"),  # an empty delimiter is skipped
        ("user.x@d.com", (".",), "user@d.com"),
    ],
)
def test_strip_extension(address: str, delimiters, expected: str) -> None:
    assert strip_extension(address, delimiters) == expected


def test_policy_addresses_order() -> None:
    assert policy_addresses("user@sub3.sub2.sub1.com") == [
        "user@sub3.sub2.sub1.com",
        "@sub3.sub2.sub1.com",
        "@.",
        "@.sub3.sub2.sub1.com",
        "@.sub2.sub1.com",
        "@.sub1.com",
        "@.com",
    ]
    assert policy_addresses("u@example.com") == ["u@example.com", "@example.com", "@.", "@.example.com", "@.com"]


@pytest.mark.parametrize("value", ["", "not-an-email", "user@localhost", "@example.com"])
def test_policy_addresses_of_non_email(value: str) -> None:
    assert policy_addresses(value) == ["@."]


def test_wildcard_ipv4_two_forms_by_default() -> None:
    assert wildcard_ipv4("192.0.2.10") == ["192.0.2.*", "192.0.*.10"]


def test_wildcard_ipv4_all_ten_forms() -> None:
    forms = wildcard_ipv4("1.2.3.4", all_forms=True)
    assert len(forms) == 10
    assert set(forms) == {
        "*.2.3.4",
        "*.*.3.4",
        "*.*.*.4",
        "*.*.*.*",
        "1.*.3.4",
        "1.*.*.4",
        "1.*.*.*",
        "1.2.*.4",
        "1.2.*.*",
        "1.2.3.*",
    }


@pytest.mark.parametrize("value", ["2001:db8::1", "", "1.2.3", "unknown", "256.0.0.1"])
def test_wildcard_ipv4_of_non_ipv4_is_empty(value: str) -> None:
    assert wildcard_ipv4(value) == []
    assert wildcard_ipv4(value, all_forms=True) == []


@pytest.mark.parametrize(
    "value, kind",
    [
        ("@.", "catchall"),
        ("@.example.com", "subdomain"),
        ("@.com", "top_level_domain"),
        ("@.c", None),
        ("@ip", "catchall_ip"),
        ("@example.com", "domain"),
        ("@com", None),
        ("@", None),
        ("user@example.com", "email"),
        ("User@Example.com", "email"),
        ("user@*", "wildcard_addr"),
        ("user+x=y@*", "wildcard_addr"),
        ("192.0.2.1", "ip"),
        ("2001:db8::1", "ip"),
        ("192.0.2.0/24", "cidr_network"),
        ("2001:db8::/32", "cidr_network"),
        ("192.0.2.1/24", None),  # host bits set: not strict
        ("192.0.2.*", "wildcard_ip"),
        ("*.*.*.*", "wildcard_ip"),
        ("999.1.1.1", "wildcard_ip"),
        ("user@localhost", None),
        ("example.com", None),
        ("", None),
    ],
)
def test_classify(value: str, kind: str | None) -> None:
    assert classify(value) == kind


# --- strict tests for what the admin tools store (anchored, each octet checked)


@pytest.mark.parametrize(
    "value, kind",
    [
        ("@.", "catchall"),
        ("@.example.com", "subdomain"),
        ("@.com", "top_level_domain"),
        ("@.co-uk", "top_level_domain"),
        ("@.xn--p1ai", "top_level_domain"),
        ("@ip", "catchall_ip"),
        ("@example.com", "domain"),
        ("@Sub.Example.COM", "domain"),
        ("@exämple.de", "domain"),
        ("user@example.com", "email"),
        ("User.Name+tag@Example.com", "email"),
        ("srs0=hash=tt=d.com=u@x.com", "email"),
        ("user@*", "wildcard_addr"),
        ("192.0.2.1", "ip"),
        ("2001:db8::1", "ip"),
        ("192.0.2.0/24", "cidr_network"),
        ("2001:db8::/32", "cidr_network"),
        ("192.168.1.*", "wildcard_ip"),
        ("192.168.*.*", "wildcard_ip"),
        ("*.*.*.*", "wildcard_ip"),
        ("255.0.*.9", "wildcard_ip"),
        # iRedAPD's prefix matches take all of these; the strict tests refuse them
        ("@.bad_domain!", None),
        ("999.1.1.1", None),
        ("300.300.300.300", None),
        ("***.1.1.1", None),
        ("1*.1.1.1", None),
        ("256.1.1.*", None),
        ("01.2.3.*", None),
        ("1.2.3.*/24", None),
        ("user@example.com>", None),
        ("a@b.com;drop", None),
        ("@exa_mple.com", None),
        ("@-bad.com", None),
        ("@bad-.com", None),
        ("@a..b.com", None),
        ("@example.com.", None),
        ("@example.123", None),
        ("@" + "a" * 64 + ".com", None),  # a label has at most 63 characters
        ("@" + "a." * 126 + "com", None),  # 255 characters: over 253
        ("u" * 65 + "@example.com", None),
        # and what iRedAPD's greylisting_admin took for a recipient because it holds an '@'
        ("x@", None),
        ("@", None),
        ("@@", None),
        ("a b@c d", None),
        ("", None),
    ],
)
def test_classify_strict(value: str, kind: str | None) -> None:
    assert classify_strict(value) == kind


@pytest.mark.parametrize(
    "value, expected",
    [
        ("@.", True),
        ("@.com", True),
        ("@example.com", True),
        ("@.example.com", True),
        ("user@example.com", True),
        ("user@*", False),
        ("@ip", False),
        ("192.0.2.1", False),
        ("x@", False),
    ],
)
def test_is_local_account(value: str, expected: bool) -> None:
    assert is_local_account(value) is expected


def test_label_lengths() -> None:
    assert is_valid_domain("a" * 63 + ".com") and not is_valid_domain("a" * 64 + ".com")
    assert is_valid_email("u" * 64 + "@example.com")


@pytest.mark.parametrize(
    "value, two_forms, all_forms",
    [
        ("192.0.2.*", True, True),
        ("192.0.*.4", True, True),
        ("192.0.*.*", False, True),
        ("*.*.*.4", False, True),
        ("*.*.*.*", False, True),
        ("1.*.3.*", False, False),  # never produced by wildcard_ipv4
        ("999.1.1.*", False, False),
        ("192.0.2.1", False, False),
    ],
)
def test_tried_wildcard(value: str, two_forms: bool, all_forms: bool) -> None:
    assert (tried_wildcard(value, False), tried_wildcard(value, True)) == (two_forms, all_forms)
    if is_valid_wildcard_ipv4(value):
        assert is_wildcard_ipv4(value)  # a strict wildcard passes iRedAPD's test too

"""greylisting_admin: argument scan, validation and output formats (pure), and each flag on SQLite."""

from __future__ import annotations

import pytest

from admin import greylisting_admin as tool
from apd.store.greylisting import SettingRow


@pytest.mark.parametrize(
    "argv, action, sender, recipient, given",
    [
        (["--list"], "--list", "@.", "@.", False),
        (["--enable", "--to", "user@example.com"], "--enable", "@.", "user@example.com", True),
        (
            ["--to", "@example.com", "--disable", "--from", "@gmail.com"],
            "--disable",
            "@gmail.com",
            "@example.com",
            True,
        ),
        (["--list", "--enable"], "--enable", "@.", "@.", False),  # the first in iRedAPD's order wins
        (["--add-whitelist", "--delete"], "--delete", "@.", "@.", False),
        (["--disable", "--from", "192.0.2.0/24"], "--disable", "192.0.2.0/24", "@.", False),
        (["--disable", "--from", "2001:db8::/32"], "--disable", "2001:db8::/32", "@.", False),
        (["--disable", "--from", "192.0.2.1"], "--disable", "192.0.2.1", "@.", False),
        (["--disable", "--from", "@.example.com"], "--disable", "@.example.com", "@.", False),
        (["--disable", "--from", "@.com"], "--disable", "@.com", "@.", False),
        (["--disable", "--from", "User@Example.com"], "--disable", "User@Example.com", "@.", False),  # not lowercased
        (["--enable", "--to", "User@Example.COM"], "--enable", "@.", "User@Example.COM", True),
        (["--enable", "--to", "@.com"], "--enable", "@.", "@.com", True),
        (["--enable", "--to", "@.example.com"], "--enable", "@.", "@.example.com", True),
        (["--enable", "--to", "üser@exämple.de"], "--enable", "@.", "üser@exämple.de", True),
    ],
)
def test_parse(argv, action, sender, recipient, given):
    command = tool.parse(argv)
    assert (command.action, command.sender, command.recipient, command.recipient_given) == (
        action,
        sender,
        recipient,
        given,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--from", "@x.com"], "<<< ERROR >>> No valid operation specified. Exit."),
        (["--enable", "--from", "192.0.2.*"], "<<< ERROR >>> Invalid sender address."),  # no wildcard IPs
        (["--enable", "--from", "user@*"], "<<< ERROR >>> Invalid sender address."),
        (["--enable", "--from", "@ip"], "<<< ERROR >>> Invalid sender address."),
        (["--enable", "--from", "example.com"], "<<< ERROR >>> Invalid sender address."),
        (["--list", "--from", "bad sender"], "<<< ERROR >>> Invalid sender address."),  # checked for every action
        (
            ["--enable", "--from", "192.0.2.1/24"],
            "<<< ERROR >>> Invalid sender address: 192.0.2.1/24 has host bits set, perhaps you should use 192.0.2.0/24",
        ),
        (["--enable", "--to", "example.com"], "<<< ERROR >>> Invalid recipient address."),
        # iRedAPD only asks --to for an '@'; apd checks it as the other tools check an account
        (["--enable", "--to", "x@"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--to", "@"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--to", "@@"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--to", "a b@c d"], "<<< ERROR >>> Invalid recipient address."),
        (["--add-whitelist", "--to", "user@example.com>"], "<<< ERROR >>> Invalid recipient address."),
        (["--list", "--to", "@.bad_domain!"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--to", "user@*"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--to", "192.0.2.1"], "<<< ERROR >>> Invalid recipient address."),
        (["--enable", "--from", "@.bad_domain!"], "<<< ERROR >>> Invalid sender address."),  # a prefix passed
        (["--enable", "--from", "user@example.com>"], "<<< ERROR >>> Invalid sender address."),
        (
            ["--enable", "--to", "caf\udce9@example.com"],  # the bytes b'caf\xe9' as Python hands them over
            "<<< ERROR >>> Argument is not valid UTF-8: caf\\xe9@example.com",
        ),
        (["--enable", "--from", "\udcff"], "<<< ERROR >>> Argument is not valid UTF-8: \\xff"),
        (["--enable", "--to"], "<<< ERROR >>> --to needs a value, e.g. --to user@example.com"),
        (["--enable", "--frm", "@x.com"], "<<< ERROR >>> Unknown argument: --frm (see --help)"),
    ],
)
def test_parse_errors(argv, message):
    with pytest.raises(tool.UsageError) as info:
        tool.parse(argv)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "value, expected",
    [
        ("@.", 0),
        ("user@example.com", 100),
        ("@example.com", 60),
        ("@.example.com", 50),
        ("@.com", 40),
        ("192.0.2.1", 80),
        ("2001:db8::1", 80),
        ("192.0.2.0/24", 70),  # CIDR: 70 so that the setting takes effect (iRedAPD writes 0)
        ("2001:db8::/32", 70),
    ],
)
def test_priority(value, expected):
    assert tool.priority(value) == expected


def test_format_settings():
    assert tool.format_settings([]) == ["* No greylisting settings."]
    lines = tool.format_settings(
        [SettingRow("user@example.com", "@.", 100, 0, False), SettingRow("@.", "192.0.2.0/24", 0, 70, True)]
    )
    assert lines == [
        "Status   Sender                             -> Local Account                 ",
        "-" * 78,
        "disabled @. (anyone)                        -> user@example.com              ",
        "enabled  192.0.2.0/24                       -> @. (anyone)                   ",
    ]


def test_format_whitelists():
    assert tool.format_whitelists([("@gmail.com", "@.", ""), ("192.0.2.0/24", "@.", "AUTO-UPDATE: x.com")]) == [
        "@gmail.com -> @., ''",
        "192.0.2.0/24 -> @., 'AUTO-UPDATE: x.com'",
    ]

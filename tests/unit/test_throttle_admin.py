"""apd-throttle-admin: argument validation, account forms and the --list / --show text (pure)."""

from __future__ import annotations

import pytest

from admin import throttle_admin as tool
from apd.store.counters import TrackingRow
from apd.throttle.rules import Claim, Setting

T0 = 1_700_000_000


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--add", "--account", "User@Example.com", "--kind", "Outbound", "--period", "360", "--max-msgs", "100"],
            tool.Command("add", "user@example.com", "outbound", {"period": 360, "max_msgs": 100}),
        ),
        (
            [
                "--add",
                "--account",
                "@.",
                "--kind",
                "inbound",
                "--msg-size",
                "0",
                "--max-rcpts",
                "-1",
                "--max-quota",
                "5",
            ],
            tool.Command("add", "@.", "inbound", {"msg_size": 0, "max_rcpts": -1, "max_quota": 5}),
        ),
        (["--delete", "--account", "@ip", "--kind", "external"], tool.Command("delete", "@ip", "external")),
        (["--list"], tool.Command("list")),
        (["--list", "--kind", "inbound", "-c", "s.py"], tool.Command("list", None, "inbound", config="s.py")),
        (["--list", "--account", "2001:DB8:0::1"], tool.Command("list", "2001:db8::1")),
        (["--show", "User@Example.com"], tool.Command("show", "user@example.com")),
        (
            ["--show", "user@example.com", "--client", "192.0.2.7"],
            tool.Command("show", "user@example.com", client="192.0.2.7"),
        ),
        (["--show", "192.0.2.7", "--kind", "external"], tool.Command("show", "", "external", client="192.0.2.7")),
    ],
)
def test_parse(argv, expected):
    assert tool.parse(argv) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--account", "@."], "No action: give one of --add, --delete, --list or --show ADDRESS"),
        (["--add", "--delete", "--account", "@.", "--kind", "inbound"], "--add and --delete conflict"),
        (["--list", "--show", "a@b.com"], "--list and --show conflict"),
        (["--add", "--kind", "inbound", "--period", "60"], "--add needs --account ACCOUNT"),
        (["--add", "--account", "@.", "--period", "60"], "--add needs --kind outbound, external or inbound"),
        (["--delete", "--account", "@."], "--delete needs --kind"),
        (["--add", "--account", "@.", "--kind", "inbound"], "--add needs a value to set: --period, --msg-size"),
        (["--add", "--account", "@.", "--kind", "sideways", "--period", "6"], 'invalid --kind "sideways": expected'),
        (["--list", "--max-msgs", "5"], "--max-msgs: only --add takes values"),
        (["--delete", "--account", "@.", "--kind", "inbound", "--period", "5"], "--period: only --add takes values"),
        (["--list", "--client", "192.0.2.1"], "--client goes with --show only"),
        (["--show", "a@b.com", "--account", "a@b.com"], "--show takes the address itself"),
        (["--show"], "argument --show: expected one argument"),
        (["--list", "--bogus"], "unrecognized arguments: --bogus"),
        (["--add", "--account", "@.", "--kind", "inbound", "--period", "0"], 'invalid --period "0": expected seconds'),
        (["--add", "--account", "@.", "--kind", "inbound", "--period", "-1"], 'invalid --period "-1"'),
        (["--add", "--account", "@.", "--kind", "inbound", "--period", "4294967296"], 'invalid --period "4294967296"'),
        (["--add", "--account", "@.", "--kind", "inbound", "--max-msgs", "-2"], 'invalid --max-msgs "-2": expected'),
        (["--add", "--account", "@.", "--kind", "inbound", "--max-quota", "1e9"], 'invalid --max-quota "1e9"'),
        (["--add", "--account", "@.", "--kind", "inbound", "--msg-size", "ten"], 'invalid --msg-size "ten"'),
        (["--add", "--account", "@.", "--kind", "inbound", "--msg-size", str(2**63)], "invalid --msg-size"),
        (
            ["--show", "@example.com"],
            '--show takes an email address or an IP address (a sender, recipient or client), got "@example.com"',
        ),
        (["--show", "192.0.2.7", "--client", "192.0.2.8"], "--client goes with an email address"),
        (["--show", "a@b.com", "--client", "b@c.com"], 'invalid --client "b@c.com": expected an IP address'),
    ],
)
def test_invalid_arguments(argv, message, capsys):
    """Exit 2 with the problem named on stderr, before any settings file or database is read."""
    assert tool.main(["-c", "/nonexistent/settings.py", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("<<< ERROR >>> ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "text, stored",
    [
        ("User@Example.com", "user@example.com"),
        (" @Example.com ", "@example.com"),
        ("@.example.com", "@.example.com"),
        ("@.com", "@.com"),
        ("@.", "@."),
        ("@ip", "@ip"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("192.0.2.*", "192.0.2.*"),
        ("192.0.*.7", "192.0.*.7"),
        ("192.*.*.*", "192.*.*.*"),  # matched with ENABLE_ALL_WILDCARD_IP only
    ],
)
def test_accounts_stored_as_the_check_looks_them_up(text, stored):
    assert tool.throttle_account(text) == stored


@pytest.mark.parametrize(
    "text, message",
    [
        ("192.0.2.1/24", 'non-null host address bits in "192.0.2.1/24", perhaps you should use "192.0.2.0/24" instead'),
        ("192.0.2.0/33", 'invalid network "192.0.2.0/33"'),
        ("user@*", "the throttle check never matches user@*"),
        ("@com", 'perhaps you should use "@.com" (a top-level domain)'),
        ("999.1.1.*", 'invalid IP address "999.1.1.*"'),
        ("999.1.1.1", 'invalid IP address "999.1.1.1"'),
        ("*.2.*.4", 'the throttle check never matches "*.2.*.4"'),
        ("user", 'invalid account "user": expected user@domain.com'),
        ("@", 'invalid account "@"'),
        ("300.300.300.300", 'invalid IP address "300.300.300.300"'),
        ("***.1.1.1", 'invalid IP address "***.1.1.1"'),
        ("@.bad_domain!", 'invalid account "@.bad_domain!"'),
        ("user@example.com>", 'invalid account "user@example.com>"'),
        ("a@b.com;drop", 'invalid account "a@b.com;drop"'),
        ("@exa_mple.com", 'invalid account "@exa_mple.com"'),
    ],
)
def test_invalid_accounts(text, message):
    with pytest.raises(tool.UsageError) as raised:
        tool.throttle_account(text)
    assert message in str(raised.value)


def test_wildcards_that_need_all_wildcard_forms():
    assert [tool.needs_all_wildcards(a) for a in ("192.0.2.*", "192.0.*.7", "192.*.*.*", "*.0.2.7", "@.")] == [
        False,
        False,
        True,
        True,
        False,
    ]


def setting(id, account, kind="outbound", priority=100, period=360, *limits):
    return Setting(id, account, kind, priority, period, *(limits or (-1, -1, -1, -1)))


def test_format_list():
    rows = [
        setting(3, "user@example.com", "outbound", 100, 360, -1, 12, 100, -1),
        setting(1, "@.", "inbound", 0, None, 0, 0, 0, 0),
    ]
    assert tool.format_list(rows) == [
        "Account           Kind      Priority  Period    msg_size   max_rcpts    max_msgs   max_quota",
        "-" * 92,
        "user@example.com  outbound       100     360          -1          12         100          -1",
        "@.                inbound          0    NULL           0           0           0           0",
        "(-1: inherit from a lower-priority setting, 0: unlimited; seconds and bytes)",
    ]
    assert tool.format_list([]) == ["* No throttle settings."]


def tracking(cur_msgs=96, cur_quota=5000, init_time=T0 - 240, tid=3, account="user@example.com"):
    return TrackingRow(1, tid, account, 360, cur_msgs, cur_quota, init_time, T0 - 10, 0)


WORKED = {
    3: setting(3, "user@example.com", "outbound", 100, 360, -1, 12, 100, -1),
    7: setting(7, "@.", "outbound", 0, 3600, 10485760, -1, -1, 2000000),
    9: setting(9, "@ip", "outbound", 0, 60, -1, -1, 50, -1),
}
CLAIMS = (
    Claim("max_rcpts", 3, "user@example.com", 12, 360),
    Claim("max_msgs", 3, "user@example.com", 100, 360),
    Claim("msg_size", 7, "@.", 10485760, 3600),
    Claim("max_quota", 7, "@.", 2000000, 3600),
)


def test_show_the_worked_example_with_live_counters():
    tracked = {
        (3, "user@example.com"): tracking(),
        (7, "user@example.com"): tracking(cur_msgs=4, cur_quota=1500000, init_time=T0 - 3000, tid=7),
    }
    assert tool.show_kind("outbound", "user@example.com", "", CLAIMS, WORKED, tracked, T0) == [
        "* outbound, user@example.com from any client:",
        "    max_rcpts: 12 recipients per message; set by user@example.com (id 3, priority 100)",
        "    max_msgs: 96 / 100 recipients in 360 s, window resets in 120 s;"
        " set by user@example.com (id 3, priority 100), counted on user@example.com",
        "    msg_size: 10485760 bytes per message; set by @. (id 7, priority 0)",
        "    max_quota: 1500000 / 2000000 bytes in 3600 s, window resets in 600 s;"
        " set by @. (id 7, priority 0), counted on user@example.com",
    ]


def test_show_windows_and_unknown_clients():
    claims = (Claim("max_msgs", 3, "user@example.com", 0, 360), Claim("max_quota", 9, "@ip", 50, 60))
    expired = {(3, "user@example.com"): tracking(init_time=T0 - 400)}
    assert tool.show_kind("inbound", "user@example.com", "", claims, WORKED, expired, T0)[1:] == [
        "    max_msgs: 0 / unlimited recipients in 360 s, window over, restarts with the next message;"
        " set by user@example.com (id 3, priority 100), counted on user@example.com",
        "    max_quota: 50 bytes in 60 s per client IP address (--client IP shows one); set by @ip (id 9, priority 0)",
    ]
    assert tool.show_kind("inbound", "user@example.com", "192.0.2.7", claims, WORKED, {}, T0)[1:] == [
        "    max_msgs: 0 / unlimited recipients in 360 s, nothing counted yet;"
        " set by user@example.com (id 3, priority 100), counted on user@example.com",
        "    max_quota: 0 / 50 bytes in 60 s, nothing counted yet; set by @ip (id 9, priority 0), counted on 192.0.2.7",
    ]
    assert tool.show_kind("external", "", "192.0.2.7", (), WORKED, {}, T0) == [
        "* external, client 192.0.2.7: no throttle setting applies."
    ]


def test_no_arguments_print_the_usage(capsys):
    assert tool.main([]) == 0
    assert capsys.readouterr().out == tool.USAGE


def test_a_non_utf8_argument_is_refused_without_a_traceback(capsys):
    assert tool.main(["--add", "--account", "caf\udce9@example.com", "--kind", "outbound"]) == 2
    err = capsys.readouterr().err
    assert "Argument is not valid UTF-8: caf\\xe9@example.com" in err
    assert "Traceback" not in err

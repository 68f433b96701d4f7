"""The pure parts of the Cluebringer migrations and the throttle priority fix."""

from __future__ import annotations

import argparse

import pytest

from admin.cluebringer import PASSWORD_ENV, Source, SourceError, source_from
from admin.fix_throttle_priority import fixed_line
from admin.migrate_cluebringer_greylisting import MemberSetting, Whitelist, member_setting, whitelist_entry
from admin.migrate_cluebringer_throttle import Quota, ThrottleSetting, setting_of
from apd.settings import defaults


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("user@example.com", MemberSetting("user@example.com", 100)),
        ("@example.com", MemberSetting("@example.com", 60)),
        ("@.example.com", MemberSetting("@.example.com", 50)),
        ("192.0.2.7", MemberSetting("192.0.2.7", 80)),
        ("192.0.2.*", MemberSetting("192.0.2.*", 70)),
        ("192.0.2.0/24", MemberSetting("192.0.2.0/24", 70)),  # iRedAPD: KeyError, the run stopped
        ("$group", "[SKIP] Not a valid account: $group"),
        ("bad\nname", "[SKIP] Not a valid account: bad\\x0aname"),
    ],
)
def test_exempt_group_members(member, expected):
    assert member_setting(member) == expected


@pytest.mark.parametrize(
    ("source", "comment", "expected"),
    [
        ("SenderIP:192.0.2.7", "google mail servers", Whitelist("192.0.2.7", "Google Mail Servers")),
        ("SenderIP:198.51.100.0/24", None, Whitelist("198.51.100.0/24", "")),
        ("SenderIP:2001:db8::/32", "x", Whitelist("2001:db8::/32", "X")),
        ("SenderDomain:example.com", "x", None),
        ("SenderIP:not-an-ip", "x", "[SKIP] Not an IP address or network: SenderIP:not-an-ip"),
    ],
)
def test_whitelist_entries(source, comment, expected):
    assert whitelist_entry(source, comment) == expected


@pytest.mark.parametrize(
    ("name", "limits", "expected"),
    [
        ("default_inbound", [("MessageCount", 50)], ThrottleSetting("@.", "inbound", 0, 3600, 50, -1)),
        ("default_outbound", [], ThrottleSetting("@.", "outbound", 0, 3600, -1, -1)),
        (
            "outbound_User@Example.com",
            [("MessageCount", 10), ("MessageCumulativeSize", 8000)],
            ThrottleSetting("user@example.com", "outbound", 100, 3600, 10, 8000),
        ),
        ("inbound_example.com", [("Other", 3)], ThrottleSetting("@example.com", "inbound", 60, 3600, -1, -1)),
        ("inbound_192.0.2.7", [("MessageCount", 5)], ThrottleSetting("192.0.2.7", "inbound", 80, 3600, 5, -1)),
        ("rate_limit", [], "[SKIP] Not an inbound_*/outbound_*/default_* quota: rate_limit"),
        ("inbound_", [], "[SKIP] Not an inbound_*/outbound_*/default_* quota: inbound_"),
        ("outbound_not valid", [], "[SKIP] Not a valid account in quota outbound_not valid"),
    ],
)
def test_quota_to_setting(name, limits, expected):
    assert setting_of(Quota(1, name, 3600), limits) == expected


def test_setting_values_leave_the_other_limits_inherited():
    setting = ThrottleSetting("@.", "inbound", 0, 60, 5, -1)
    assert setting.values() == {"period": 60, "msg_size": -1, "max_rcpts": -1, "max_msgs": 5, "max_quota": -1}


def args(**given):
    values = dict(dialect=None, host=None, port=None, database=None, user=None, password=None, password_file=None)
    values.update(given)
    return argparse.Namespace(**values)


def test_source_from_flags_environment_and_settings(tmp_path):
    settings = defaults().replace(backend="pgsql", cluebringer_db_host="db.example.com", cluebringer_db_password="s")
    assert source_from(args(), settings, {}) == Source(
        "pgsql", "db.example.com", 5432, "cluebringer", "cluebringer", "s"
    )
    assert source_from(args(), settings, {PASSWORD_ENV: "env"}).password == "env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    chosen = source_from(args(dialect="mysql", host="h", port=3307, user="u", password_file=str(secret)), settings, {})
    assert chosen == Source("mysql", "h", 3307, "cluebringer", "u", "from-file")
    assert not source_from(args(), defaults(), {}).complete()  # no password anywhere
    assert not source_from(args(host=""), settings, {}).complete()
    assert not source_from(args(), settings.replace(cluebringer_db_user=""), {}).complete()


def test_password_flag_comes_first(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = defaults().replace(cluebringer_db_password="setting")
    environ = {PASSWORD_ENV: "env"}
    assert source_from(args(password="flag", password_file=str(secret)), settings, environ).password == "flag"
    assert source_from(args(password_file=str(secret)), settings, environ).password == "from-file"
    assert source_from(args(), settings, environ).password == "env"
    assert source_from(args(), settings, {}).password == "setting"


@pytest.mark.parametrize(
    ("given", "values", "message"),
    [
        ({"port": 70000}, {}, "port must be 1-65535"),
        ({}, {"cluebringer_db_port": "x"}, "cluebringer_db_port must be a number"),
        ({}, {"cluebringer_db_dialect": "oracle"}, "must be mysql or pgsql"),
        ({"password_file": "/nonexistent/pw"}, {}, "cannot read the password file"),
    ],
)
def test_source_errors(given, values, message):
    with pytest.raises(SourceError, match=message):
        source_from(args(**given), defaults().replace(**values), {})


def test_fixed_line():
    assert fixed_line("@example.com", 0, 60) == "Fixed throttle priority: account=@example.com, priority: 0 -> 60."

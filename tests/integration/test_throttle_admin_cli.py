"""apd-throttle-admin end to end on SQLite, MariaDB and PostgreSQL, in apd's schema and in the
real iRedMail/iRedAPD schemas (PostgreSQL's without a unique key on throttle (account, kind))."""

from __future__ import annotations

import re
import time

import pytest

from admin import throttle_admin as tool
from apd.throttle.rules import candidates, judge
from tests.integration.greylisting_backends import BACKENDS, IREDMAIL_BACKENDS, open_backend

COLUMNS = "account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota"


@pytest.fixture(params=BACKENDS + IREDMAIL_BACKENDS)
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    yield b
    b.close()


def admin(backend, capsys, *argv):
    code = tool.main(["-c", str(backend.settings_file), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(backend):
    return sorted(tuple(r) for r in backend.db.query(f"SELECT {COLUMNS} FROM throttle"))


def tid_of(backend, account: str, kind: str = "outbound") -> int:
    return int(backend.db.query_one("SELECT id FROM throttle WHERE account = %s AND kind = %s", (account, kind))[0])


ADDS = [
    ("@.", "outbound", "--period", "3600", "--msg-size", "10485760"),
    ("User@Example.com", "outbound", "--period", "360", "--max-msgs", "100", "--max-rcpts", "12"),
    ("@example.com", "outbound", "--period", "60", "--max-quota", "0"),
    ("@.example.com", "inbound", "--period", "60", "--max-msgs", "7"),
    ("@.com", "inbound", "--period", "60", "--max-msgs", "8"),
    ("@ip", "inbound", "--period", "60", "--max-msgs", "50"),
    ("2001:DB8:0::7", "external", "--period", "60", "--max-msgs", "9"),
    ("192.0.2.*", "external", "--period", "60", "--max-msgs", "10"),
    ("192.0.2.0/24", "external", "--period", "60", "--max-quota", "1000"),
]


def test_add_list_update_delete(backend, capsys):
    assert admin(backend, capsys, "--list") == (0, "* No throttle settings.\n", "")
    for account, kind, *values in ADDS:
        code, out, err = admin(backend, capsys, "--add", "--account", account, "--kind", kind, *values)
        assert (code, err) == (0, "") and out.startswith("* Add throttle setting: ")
    # priorities from the account type, as iRedAdmin writes them; -1 for the limits not given
    assert rows(backend) == sorted(
        [
            ("@.", "outbound", 0, 3600, 10485760, -1, -1, -1),
            ("user@example.com", "outbound", 100, 360, -1, 12, 100, -1),
            ("@example.com", "outbound", 60, 60, -1, -1, -1, 0),
            ("@.example.com", "inbound", 50, 60, -1, -1, 7, -1),
            ("@.com", "inbound", 40, 60, -1, -1, 8, -1),
            ("@ip", "inbound", 0, 60, -1, -1, 50, -1),
            ("2001:db8::7", "external", 80, 60, -1, -1, 9, -1),
            ("192.0.2.*", "external", 70, 60, -1, -1, 10, -1),
            ("192.0.2.0/24", "external", 70, 60, -1, -1, -1, 1000),
        ]
    )
    # a change keeps the values not given
    code, out, _ = admin(
        backend, capsys, "--add", "--account", "user@example.com", "--kind", "outbound", "--max-msgs", "90"
    )
    assert (code, out) == (
        0,
        "* Update throttle setting: user@example.com (outbound): priority=100, period=360, msg_size=-1,"
        " max_rcpts=12, max_msgs=90, max_quota=-1\n",
    )
    assert ("user@example.com", "outbound", 100, 360, -1, 12, 90, -1) in rows(backend)
    assert len(rows(backend)) == len(ADDS)

    code, out, _ = admin(backend, capsys, "--list", "--kind", "outbound")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == ["user@example.com", "@example.com", "@."]
    code, out, _ = admin(backend, capsys, "--list", "--account", "User@Example.com")
    assert out.splitlines()[2].split() == ["user@example.com", "outbound", "100", "360", "-1", "12", "90", "-1"]

    # a delete takes the setting's counters along (throttle_tracking.tid refers to it)
    tid = tid_of(backend, "user@example.com")
    backend.db.execute(
        "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, init_time) VALUES (%s, %s, 360, 5, 1)",
        (tid, "user@example.com"),
    )
    assert admin(backend, capsys, "--delete", "--account", "user@example.com", "--kind", "outbound")[:2] == (
        0,
        "* Delete throttle setting: user@example.com (outbound), and 1 counter(s)\n",
    )
    assert backend.db.query("SELECT tid FROM throttle_tracking") == []
    assert len(rows(backend)) == len(ADDS) - 1
    code, out, err = admin(backend, capsys, "--delete", "--account", "user@example.com", "--kind", "outbound")
    assert (code, out, err) == (1, "", "<<< ERROR >>> No throttle setting: user@example.com (outbound)\n")


def test_a_new_setting_needs_a_period_and_a_limit(backend, capsys):
    code, _, err = admin(backend, capsys, "--add", "--account", "@.", "--kind", "inbound", "--max-msgs", "5")
    assert (code, err) == (2, "<<< ERROR >>> A new setting needs --period SECONDS: @. (inbound) has none\n")
    code, _, err = admin(backend, capsys, "--add", "--account", "@.", "--kind", "inbound", "--period", "60")
    assert code == 2 and err.startswith("<<< ERROR >>> A new setting needs a limit: --msg-size, --max-rcpts")
    assert rows(backend) == []
    # an existing setting takes a period alone
    admin(backend, capsys, "--add", "--account", "@.", "--kind", "inbound", "--period", "60", "--max-msgs", "5")
    assert admin(backend, capsys, "--add", "--account", "@.", "--kind", "inbound", "--period", "120")[0] == 0
    assert rows(backend) == [("@.", "inbound", 0, 120, -1, -1, 5, -1)]


def test_rows_typed_by_hand_are_found_case_insensitively(backend, capsys):
    backend.db.execute(
        "INSERT INTO throttle (account, kind, priority, period, max_msgs) VALUES ('User@Example.com', 'outbound', 5, 60, 3)"
    )
    assert (
        admin(backend, capsys, "--add", "--account", "user@example.com", "--kind", "outbound", "--max-msgs", "4")[0]
        == 0
    )
    # the row is changed (priority fixed too), not doubled
    assert rows(backend) == [("User@Example.com", "outbound", 100, 60, -1, -1, 4, -1)]
    assert admin(backend, capsys, "--delete", "--account", "USER@example.com", "--kind", "outbound")[0] == 0
    assert rows(backend) == []


def count_messages(backend, user: str, client: str, kind: str, messages: int, rc: int, size: int, now: int) -> None:
    """Count messages as the throttle check does (rules.judge on the store's counters)."""
    store = backend.store
    accounts = candidates(user, client, None)
    for _ in range(messages):
        verdict = judge(
            store.throttle.matching([kind], accounts),
            kind,
            accounts,
            user,
            client,
            rc,
            size,
            now,
            store.throttle_counters,
        )
        assert verdict.reply is None


def test_show_names_the_row_setting_each_limit_and_its_live_counter(backend, capsys):
    """The worked example of plugins.md: msg_size from the global row, max_rcpts and max_msgs
    from the user's; 4 messages of 12 recipients counted by the check's own code."""
    add = ("--add", "--kind", "outbound", "--account")
    assert (
        admin(backend, capsys, *add, "user@d.com", "--period", "360", "--max-msgs", "100", "--max-rcpts", "12")[0] == 0
    )
    assert admin(backend, capsys, *add, "@.", "--period", "3600", "--msg-size", "10485760")[0] == 0
    assert (
        admin(backend, capsys, *add[:-2], "external", "--account", "@ip", "--period", "60", "--max-quota", "5000")[0]
        == 0
    )
    user_id, global_id = tid_of(backend, "user@d.com"), tid_of(backend, "@.")
    now = int(time.time())
    count_messages(backend, "user@d.com", "192.0.2.7", "outbound", 4, 12, 1000, now - 240)
    count_messages(backend, "user@d.com", "192.0.2.7", "external", 2, 1, 2000, now - 20)

    code, out, err = admin(backend, capsys, "--show", "User@D.com", "--client", "192.0.2.7")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == [
        "* outbound, user@d.com from 192.0.2.7:",
        f"    max_rcpts: 12 recipients per message; set by user@d.com (id {user_id}, priority 100)",
    ]
    assert re.fullmatch(
        r"    max_msgs: 48 / 100 recipients in 360 s, window resets in 1[12]\d s;"
        rf" set by user@d.com \(id {user_id}, priority 100\), counted on user@d.com",
        lines[2],
    )
    assert lines[3] == f"    msg_size: 10485760 bytes per message; set by @. (id {global_id}, priority 0)"
    assert lines[4] == "* external, user@d.com from 192.0.2.7:"
    assert re.fullmatch(
        r"    max_quota: 4000 / 5000 bytes in 60 s, window resets in [34]\d s; .* counted on 192.0.2.7", lines[5]
    )
    assert lines[6] == "* inbound, user@d.com from 192.0.2.7: no throttle setting applies."

    # without the client: @ip counts per client, so there is no one counter to show
    code, out, _ = admin(backend, capsys, "--show", "user@d.com", "--kind", "external")
    assert out.splitlines()[1].startswith(
        "    max_quota: 5000 bytes in 60 s per client IP address (--client IP shows one)"
    )
    # a client alone: its own settings
    code, out, _ = admin(backend, capsys, "--show", "192.0.2.7", "--kind", "external")
    assert out.splitlines()[0] == "* external, client 192.0.2.7:"


def test_show_follows_alias_domains(backend, capsys):
    vmail = backend.store.vmail
    vmail.execute("INSERT INTO domain (domain, active) VALUES ('d.com', 1)")
    vmail.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.org', 'd.com')")
    admin(backend, capsys, "--add", "--account", "@d.com", "--kind", "inbound", "--period", "60", "--max-rcpts", "3")
    out = admin(backend, capsys, "--show", "user@alias.org", "--kind", "inbound")[1]
    assert out.splitlines()[1].startswith("    max_rcpts: 3 recipients per message; set by @d.com")

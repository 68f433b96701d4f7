"""Conformance audit of issue 5 (plugins.md "greylisting", admin-tools.md §2-§4): rules not
covered elsewhere, each with a case that fails when the rule is broken."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from apd import settings as settings_module
from apd.checks.greylisting import Timing
from apd.store.greylisting import Times, greylisted_after
from tests.unit.test_greylisting_check import CLIENT, GREY, RCPT, SENDER, T0, FakeSpf, greylisting_env

ROOT = Path(__file__).resolve().parents[2]
AUTH = 30 * 86400


@pytest.fixture
def env(tmp_path):
    return greylisting_env(tmp_path)


def tracking(e, client=CLIENT):
    return e.db.query(
        "SELECT sender, recipient, record_expired, passed FROM greylisting_tracking WHERE client_address = %s"
        " ORDER BY id",
        (client,),
    )


def insert_row(e, sender, client, record_expired, passed, recipient=RCPT):
    e.sql(
        "INSERT INTO greylisting_tracking (sender, recipient, client_address, block_expired, record_expired, passed)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (sender, recipient, client, T0 - 1000, record_expired, passed),
    )


def test_passed_client_refresh_touches_all_its_passed_rows_and_nothing_else(env):
    """Step 8: record_expired = now + AUTH on ALL rows of the IP with passed = 1; unpassed rows
    of the IP and rows of other IPs keep theirs; no row for the new triplet."""
    e = env()
    e.setting("@.", "@.")
    insert_row(e, "a@x.org", CLIENT, T0 + 5, 1)
    insert_row(e, "b@x.org", CLIENT, T0 - 5, 1)  # expired but not yet cleaned: still counts
    insert_row(e, "c@x.org", CLIENT, T0 + 7, 0)  # unpassed row of the same IP
    insert_row(e, "a@x.org", "198.51.100.1", T0 + 9, 1)  # another client
    assert e.ask(T0 + 100) is None
    assert tracking(e) == [
        ("a@x.org", RCPT, T0 + 100 + AUTH, 1),
        ("b@x.org", RCPT, T0 + 100 + AUTH, 1),
        ("c@x.org", RCPT, T0 + 7, 0),
    ]
    assert tracking(e, "198.51.100.1") == [("a@x.org", RCPT, T0 + 9, 1)]


def test_spf_bypass_comes_before_the_passed_client_refresh(env):
    """Step 7 before step 8: an SPF match returns DUNNO without refreshing the passed rows."""
    e = env(GREYLISTING_BYPASS_SPF=True)
    e.setting("@.", "@.")
    e.check._spf = FakeSpf({(CLIENT, "example.net")})
    insert_row(e, "a@x.org", CLIENT, T0 + 5, 1)
    assert e.ask(T0 + 100) is None
    assert tracking(e) == [("a@x.org", RCPT, T0 + 5, 1)]


def test_pass_deletes_only_the_clients_unpassed_rows(env):
    """Step 9 pass: passed = 1 and a new record_expired on the triplet, then every passed = 0 row
    of this client_address goes; its passed rows and other clients' rows stay."""
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    insert_row(e, "other@x.org", CLIENT, T0 + 86400, 0)
    insert_row(e, "keep@x.org", "198.51.100.1", T0 + 86400, 0)
    assert e.ask(T0 + 900) is None
    assert tracking(e) == [(SENDER, RCPT, T0 + 900 + AUTH, 1)]
    assert tracking(e, "198.51.100.1") == [("keep@x.org", RCPT, T0 + 86400, 0)]


@pytest.mark.parametrize(
    "table, account, sender, recipient, expected",
    [
        # the whitelist tables are matched against the same candidates as the settings: rcpts
        # include expand(local@target) for an alias domain
        ("greylisting_whitelists", "@example.com", "@.", "user@alias.org", None),
        ("greylisting_whitelists", "user@example.com", "@example.net", "user@alias.org", None),
        ("greylisting_whitelist_domain_spf", "@.example.com", CLIENT, "user@alias.org", None),
        ("greylisting_whitelists", "@other.com", "@.", "user@alias.org", GREY),
        # sender forms of expand(S): subdomain and TLD
        ("greylisting_whitelists", "@.", "@.net", RCPT, None),
        ("greylisting_whitelists", "@.", "@.example.net", RCPT, None),
        ("greylisting_whitelists", "@.", "@.other.net", RCPT, GREY),
        # an account form the recipient does not expand to
        ("greylisting_whitelists", "@.alias.org", "@.", "user@example.com", GREY),
    ],
)
def test_whitelist_accounts_and_sender_forms(env, table, account, sender, recipient, expected):
    e = env()
    e.sql("INSERT INTO domain (domain) VALUES ('example.com')")
    e.sql("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.org', 'example.com')")
    e.setting("@.", "@.")
    e.whitelist(sender, account, table)
    assert e.ask(T0, recipient=recipient) == expected


@pytest.mark.parametrize(
    "rows, attrs, expected",
    [
        # first matching row decides, even when a lower row would enable
        ([("@.", "@.", 1, 0, 0), ("@example.com", "@example.net", 0, 60, 60)], {}, None),
        # a more specific recipient row that does not match the sender is skipped
        ([("@.", "@.", 1, 0, 0), ("user@example.com", "@other.net", 0, 100, 60)], {}, GREY),
        # settings of the alias target domain apply to the alias domain's recipients
        ([("@.", "@.", 1, 0, 0), ("@example.com", "@.", 0, 60, 0)], {"recipient": "user@alias.org"}, None),
        # the sender's IP and its wildcard are sender candidates
        ([("@.", "@.", 1, 0, 0), ("@.", CLIENT, 0, 0, 80)], {}, None),
        # active must be exactly 1
        ([("@.", "@.", 2, 0, 0)], {}, None),
    ],
)
def test_settings_rows(env, rows, attrs, expected):
    e = env()
    e.sql("INSERT INTO domain (domain) VALUES ('example.com')")
    e.sql("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.org', 'example.com')")
    for account, sender, active, priority, sender_priority in rows:
        e.setting(account, sender, active, priority, sender_priority)
    assert e.ask(T0, **attrs) == expected


def test_retry_too_soon_moves_nothing_but_the_count(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    before = e.row()
    assert e.ask(T0 + 899) == GREY
    assert e.row() == dict(before, blocked_count=2)


def test_training_mode_still_passes_and_refreshes(env):
    e = env(GREYLISTING_TRAINING_MODE=True)
    e.setting("@.", "@.")
    assert e.ask(T0) is None
    assert e.ask(T0 + 900) is None
    assert e.row()["passed"] == 1
    assert e.ask(T0 + 1000, sender="x@y.org") is None
    assert e.row()["record_expired"] == T0 + 1000 + AUTH


# --- timers, cron and console scripts (issue 5 items 5 and 6)


def console_scripts() -> set[str]:
    text = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"([a-z0-9-]+) = [a-z_.]+:main"', text))


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "systemd" / name)
    return parser


@pytest.mark.parametrize(
    "timer, service, script, schedule",
    [
        ("apd-cleanup.timer", "apd-cleanup.service", "apd-cleanup-db", ("OnCalendar", "hourly")),
        (
            "apd-spf-whitelists.timer",
            "apd-spf-whitelists.service",
            "apd-spf-to-greylist-whitelists",
            ("OnUnitActiveSec", "30min"),
        ),
    ],
)
def test_timers_run_the_installed_console_scripts(timer, service, script, schedule):
    t, s = unit(timer), unit(service)
    assert t["Timer"][schedule[0]] == schedule[1]
    assert t["Install"]["WantedBy"] == "timers.target"
    assert s["Service"]["Type"] == "oneshot"
    command = s["Service"]["ExecStart"].split()
    assert command[0].rsplit("/", 1)[-1] == script
    assert script in console_scripts()
    assert s["Service"]["User"] == settings_module.defaults().run_as_user  # the daemon's account


@pytest.mark.parametrize(
    "script, minute, hour",
    [("apd-cleanup-db", None, "*"), ("apd-spf-to-greylist-whitelists", "*/30", "*")],
)
def test_cron_lines_run_the_installed_console_scripts(script, minute, hour):
    lines = [
        line
        for line in (ROOT / "conf" / "cron" / "apd").read_text().splitlines()
        if line.strip() and not line.startswith("#") and script in line
    ]
    assert len(lines) == 1
    fields = lines[0].split()
    assert fields[1:5] == [hour, "*", "*", "*"] and fields[5] == "apd"
    assert fields[0] == minute if minute else fields[0].isdigit()  # hourly at a fixed minute
    assert any(part.rsplit("/", 1)[-1] == script for part in fields[6:])
    assert script in console_scripts()


def test_every_admin_tool_has_its_console_script():
    assert {"apd-greylisting-admin", "apd-cleanup-db", "apd-spf-to-greylist-whitelists"} <= console_scripts()


# --- whitelist freshness: an in-place UPDATE (no new row) is seen within RELOAD_INTERVAL


@pytest.mark.parametrize(
    "before, after",
    [
        ("@gmail.com", "192.0.2.0/24"),  # an ordinary row turned into a network
        ("10.0.0.0/8", "192.0.2.0/24"),  # one network turned into another
        ("@gmail.com", "@EXAMPLE.NET"),  # an ordinary row turned into a capitalised address
    ],
)
def test_in_place_update_of_a_whitelist_row_is_seen_within_the_reload_interval(env, before, after):
    from apd.greylisting_whitelist_cache import RELOAD_INTERVAL, WhitelistCache

    e = env()
    e.setting("@.", "@.")
    clock = [1000.0]
    repo = e.store.greylisting
    e.check._whitelists = WhitelistCache(repo, clock=lambda: clock[0])
    e.check._whitelists_source = repo
    e.whitelist(before)
    assert e.ask(T0) == GREY
    e.sql("UPDATE greylisting_whitelists SET sender = %s", (after,))
    clock[0] += RELOAD_INTERVAL
    assert e.ask(T0 + 1) is None
    assert RELOAD_INTERVAL <= 60


# --- greylisting_admin on the embedded SQLite store: texts and rows (admin-tools.md §2)


@pytest.fixture
def admin(tmp_path, capsys):
    from admin import greylisting_admin as tool

    conf = tmp_path / "settings.py"
    conf.write_text(f"backend = 'sqlite'\nsqlite_db_path = {str(tmp_path / 'apd.sqlite3')!r}\n")

    def run(*argv):
        code = tool.main(["-c", str(conf), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(
    "argv, out, err_start, code",
    [
        # the action line comes first, then INVALID_DOMAIN (iRedAPD's order)
        (["--whitelist-domain", "--from", "user@example.com"], "* Whitelisting sender domain: \n", "INVALID_DOMAIN", 1),
        (
            ["--whitelist-domain", "--from", "@.example.com"],
            "* Whitelisting sender domain: .example.com\n",
            "INVALID",
            1,
        ),
        (["--whitelist-domain", "--from", "@example.com"], "* Whitelisting sender domain: example.com\n", "", 0),
        (
            ["--remove-whitelist-domain", "--from", "@example.com"],
            "* Remove whitelisted sender domain: example.com\n",
            "",
            0,
        ),
        (
            ["--delete", "--from", "@x.org", "--to", "@example.com"],
            "* Delete greylisting setting: @x.org -> @example.com\n",
            "",
            0,
        ),
        (["--list-whitelists"], "", "", 0),
    ],
)
def test_admin_texts(admin, argv, out, err_start, code):
    result = admin(*argv)
    assert (result[0], result[1]) == (code, out)
    assert result[2].startswith(err_start) and bool(result[2]) is bool(err_start)


@pytest.mark.parametrize(
    "sender, recipient, priority, sender_priority",
    [
        ("@.", "@.", 0, 0),
        ("user@example.net", "user@example.com", 100, 100),
        ("@example.net", "@example.com", 60, 60),
        ("@.example.net", "@.example.com", 50, 50),
        ("@.net", "@.com", 40, 40),
        ("192.0.2.1", "@.", 0, 80),
        ("2001:db8::1", "@.", 0, 80),
        ("192.0.2.0/24", "@.", 0, 70),  # DIFFERENCES 7: iRedAPD writes 0
    ],
)
def test_admin_writes_iredapd_priorities(admin, tmp_path, sender, recipient, priority, sender_priority):
    import sqlite3

    assert admin("--disable", "--from", sender, "--to", recipient)[0] == 0
    assert admin("--enable", "--from", sender, "--to", recipient)[0] == 0  # replaces, one row
    rows = sqlite3.connect(tmp_path / "apd.sqlite3").execute(
        "SELECT account, priority, sender, sender_priority, active FROM greylisting"
    )
    assert rows.fetchall() == [(recipient, priority, sender, sender_priority, 1)]


# --- cleanup_db (admin-tools.md §0, §4)


class RenewAfterSelect:
    """A real database on which another client renews rows right after cleanup's SELECT."""

    def __init__(self, db, renew):
        self.db, self.renew, self.done = db, renew, False

    def query(self, sql, params=()):
        rows = self.db.query(sql, params)
        if not self.done and sql.startswith("SELECT id FROM greylisting_tracking"):
            self.done = True
            self.renew(self.db)
        return rows

    def execute(self, sql, params=()):
        return self.db.execute(sql, params)

    def query_one(self, sql, params=()):
        return self.db.query_one(sql, params)


def test_cleanup_keeps_a_row_renewed_between_select_and_delete(env):
    from admin import cleanup_db

    e = env()
    insert_row(e, "a@x.org", CLIENT, T0 - 10, 1)
    insert_row(e, "b@x.org", CLIENT, T0 - 10, 0)
    renew = "UPDATE greylisting_tracking SET record_expired = %s WHERE client_address = %s AND passed = 1"
    db = RenewAfterSelect(e.db, lambda db: db.execute(renew, (T0 + AUTH, CLIENT)))
    lines: list[str] = []
    cleanup_db.cleanup(db, e.settings, T0, lines.append)
    assert "* greylisting_tracking: 1 records removed." in lines
    assert "* greylisting_tracking: 1 left." in lines
    assert tracking(e) == [("a@x.org", RCPT, T0 + AUTH, 1)]


@pytest.mark.parametrize(
    "euid, user, expected_system",
    [
        (0, "root", True),  # the daemon resolves its path as root, before dropping privileges
        (999, "apd", True),  # the timers and cron jobs run as run_as_user: the same file
        (1000, "alice", False),  # anyone else: a per-user state file
    ],
)
def test_tools_run_as_the_daemons_account_use_the_daemons_sqlite_file(monkeypatch, euid, user, expected_system):
    from apd.store import resolve_paths
    from apd.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store.os, "geteuid", lambda: euid)
    monkeypatch.setattr(sqlite_store, "_user_name", lambda: user)
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/state")
    settings = resolve_paths(settings_module.defaults().replace(backend="sqlite", run_as_user="apd"))
    assert (settings.sqlite_db_path == sqlite_store.SYSTEM_PATH) is expected_system
    if not expected_system:
        assert settings.sqlite_db_path == "/tmp/state/apd/apd.sqlite3"


# --- tracking branches: the statement's outcome read back from the row it leaves


def result_row(passed, count, init, block, record):
    return (passed, count, init, block, record)


TIMES = Times(T0, T0 + 900, T0 + 86400, T0 + AUTH)
TIMES_NO_BLOCK = Times(T0, T0, T0 + 86400, T0 + AUTH)
TIMES_NO_BLOCK_SAME_EXPIRY = Times(T0, T0, T0 + AUTH, T0 + AUTH)


@pytest.mark.parametrize(
    "row, times, greylisted",
    [
        (result_row(0, 1, T0, T0 + 900, T0 + 86400), TIMES, True),  # new
        (result_row(0, 4, T0 - 60, T0 + 840, T0 + 86340), TIMES, True),  # too soon
        (result_row(1, 4, T0 - 900, T0, T0 + AUTH), TIMES, False),  # pass at block_expired
        (result_row(1, 1, T0, T0 + 900, T0 + 86400), TIMES, True),  # reset of a passed row: passed kept
        (result_row(1, 5, T0 - 60, T0 + 840, T0 + 86340), TIMES, True),  # too soon on a passed row (race)
        (result_row(0, 1, T0, T0, T0 + 86400), TIMES_NO_BLOCK, True),  # new, block time 0
        (result_row(1, 1, T0, T0, T0 + 86400), TIMES_NO_BLOCK, True),  # reset of a passed row, block time 0
        (result_row(1, 1, T0, T0, T0 + AUTH), TIMES_NO_BLOCK, False),  # same-second retry passes
        (result_row(1, 1, T0, T0, T0 + AUTH), TIMES_NO_BLOCK_SAME_EXPIRY, False),  # ambiguous: passed
    ],
)
def test_greylisted_after(row, times, greylisted):
    assert greylisted_after(row, times) is greylisted


@pytest.mark.parametrize(
    "stored, now",
    [
        (None, T0),
        ({"init_time": T0, "block_expired": T0, "record_expired": T0 + 86400, "blocked_count": 1, "passed": 0}, T0),
        (
            {"init_time": T0, "block_expired": T0, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 1},
            T0 + 86401,
        ),
        (
            {"init_time": T0, "block_expired": T0, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0},
            T0 + 86401,
        ),
    ],
)
def test_tracking_statement_matches_next_state_with_no_block_time(env, stored, now):
    from tests.unit.test_greylisting_check import assert_tracking_statement_matches

    assert_tracking_statement_matches(env, stored, now, Timing(0, 30, 1))


def test_expired_passed_triplet_keeps_passed_through_the_check(env):
    """Reachable only by a race in practice; the row's columns follow schemas.md §1.12 step 6."""
    e = env()
    e.setting("@.", "@.")
    insert_row(e, SENDER, CLIENT, T0 - 5, 1)
    tracked = e.store.greylisting.track(SENDER, RCPT, CLIENT, "example.net", "example.com", Timing(15, 30, 1).times(T0))
    assert tracked.passed is False
    assert e.row()["passed"] == 1 and e.row()["blocked_count"] == 1 and e.row()["init_time"] == T0


# --- spf_to_greylist_whitelists row handling (admin-tools.md §3 step 7)


def test_replace_spf_senders_row_handling(env):
    e = env()
    spf = "greylisting_whitelist_domain_spf"
    e.whitelist("192.0.2.1", "@.", spf)  # stored before, under another comment: kept as it is
    e.sql(f"INSERT INTO {spf} (account, sender, comment) VALUES ('@.', '203.0.113.9', 'AUTO-UPDATE: d.test')")
    e.sql(f"INSERT INTO {spf} (account, sender, comment) VALUES ('@.', '203.0.113.8', 'AUTO-UPDATE: other.test')")
    e.sql(
        "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES ('@.', '1.2.3.4', 'AUTO-UPDATE: d.test')"
    )
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.0/24", "198.51.100.7"):
        insert_row(e, "s@x.org", client, T0, 0)
    e.store.greylisting_whitelists.replace_spf_senders("d.test", ["192.0.2.1", "192.0.2.2", "192.0.2.0/24", "@d.test"])
    rows = sorted(e.db.query(f"SELECT account, sender, comment FROM {spf}"))
    assert rows == [
        ("@.", "192.0.2.0/24", "AUTO-UPDATE: d.test"),
        ("@.", "192.0.2.1", ""),
        ("@.", "192.0.2.2", "AUTO-UPDATE: d.test"),
        ("@.", "203.0.113.8", "AUTO-UPDATE: other.test"),
        ("@.", "@d.test", "AUTO-UPDATE: d.test"),
    ]
    assert e.db.query("SELECT COUNT(*) FROM greylisting_whitelists") == [(0,)]  # pre-2.1 rows of the domain
    # tracking of each listed IP or network goes (exact client_address, as iRedAPD)
    left = sorted(r[0] for r in e.db.query("SELECT client_address FROM greylisting_tracking"))
    assert left == ["198.51.100.7"]
    e.store.greylisting_whitelists.replace_spf_senders("d.test", [])  # an empty result: the rows go
    assert sorted(r[0] for r in e.db.query(f"SELECT sender FROM {spf}")) == ["192.0.2.1", "203.0.113.8"]


@pytest.mark.parametrize(
    "rows",
    [
        [],  # no setting: greylisting is off
        [("@.", "@.", 0, 0, 0)],  # disabled
        [("@.", "@other.net", 1, 0, 60)],  # no row matches the sender
    ],
)
def test_spf_is_not_consulted_unless_greylisting_applies(env, rows):
    """Step 6 before step 7: no DNS lookups for mail that is not greylisted anyway."""
    e = env(GREYLISTING_BYPASS_SPF=True)
    for account, sender, active, priority, sender_priority in rows:
        e.setting(account, sender, active, priority, sender_priority)
    assert e.ask(T0) is None
    assert e.check._spf.asked == []
    assert e.rows() == []


def test_default_whitelist_domains_include_the_ones_the_spec_names():
    from apd.store.greylisting_whitelists import DEFAULT_WHITELIST_DOMAINS

    named = {"amazon.com", "aol.com", "google.com", "microsoft.com", "outlook.com", "yahoo.com"}
    assert named <= set(DEFAULT_WHITELIST_DOMAINS)
    assert len(DEFAULT_WHITELIST_DOMAINS) >= 45

"""apd-wblist-admin on the embedded SQLite store (admin-tools.md §1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin.wblist_admin import invalid_reason, main
from apd.store.wblist import text
from tests.helpers.wblist import sqlite_store

ROOT = Path(__file__).resolve().parents[2]

INVALID = [
    ("user@example.com", None),
    ("user@*", None),
    ("@example.com", None),
    ("@.example.com", None),
    ("@.com", None),
    ("@.", None),
    ("192.0.2.1", None),
    ("2001:db8::1", None),
    ("192.0.2.0/24", None),
    ("2001:db8::/32", None),
    ("192.0.2.*", None),
    ("172.16.1.3/21", 'non-null host address bits in "172.16.1.3/21", perhaps you should use "172.16.0.0/21" instead'),
    (
        "2001:db8::1/32",
        'non-null host address bits in "2001:db8::1/32", perhaps you should use "2001:db8::/32" instead',
    ),
    ("10.0.0.1/33", 'invalid prefix length "33" in "10.0.0.1/33", expected 0 to 32 for IPv4'),
    ("2001:db8::/129", 'invalid prefix length "129" in "2001:db8::/129", expected 0 to 128 for IPv6'),
    ("foo/24", 'invalid network address in "foo/24", expected a CIDR network such as 192.168.1.0/24'),
    ("@com", 'invalid domain in "@com", perhaps you should use "@.com" (a top-level domain) instead'),
    ("@exa_mple", 'invalid domain in "@exa_mple", expected @domain.com'),
    ("@.-", 'invalid domain in "@.-", expected @.domain.com (the domain and its subdomains) or @.'),
    ("user@localhost", 'invalid email address "user@localhost", expected user@domain.com or user@*'),
    ("192.168.*.*", None),
    ("*.*.*.*", None),
    # iRedAPD's prefix and digit-group tests took these
    ("999.1.1.1", 'invalid IPv4 address "999.1.1.1", expected octets 0 to 255, or * in a wildcard such as 192.168.1.*'),
    (
        "300.300.300.300",
        'invalid IPv4 address "300.300.300.300", expected octets 0 to 255, or * in a wildcard such as 192.168.1.*',
    ),
    ("***.1.1.1", 'invalid IPv4 address "***.1.1.1", expected octets 0 to 255, or * in a wildcard such as 192.168.1.*'),
    ("@.bad_domain!", 'invalid domain in "@.bad_domain!", expected @.domain.com (the domain and its subdomains) or @.'),
    ("@bad_domain.com", 'invalid domain in "@bad_domain.com", expected @domain.com'),
    ("user@example.com>", 'invalid email address "user@example.com>", expected user@domain.com or user@*'),
]


@pytest.mark.parametrize("entry,reason", INVALID)
def test_invalid_reason(entry, reason):
    assert invalid_reason(entry) == reason


def test_other_junk_names_the_accepted_forms():
    assert invalid_reason("junk").startswith('invalid entry "junk", expected user@domain.com, user@*, @domain.com')


@pytest.fixture
def tool(tmp_path, capsys):
    db_path = tmp_path / "apd.sqlite3"
    config = tmp_path / "settings.py"
    config.write_text(f"backend = 'sqlite'\nsqlite_db_path = {str(db_path)!r}\n")
    _, store = sqlite_store(db_path)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["-c", str(config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    run.store = store
    yield run
    store.close()


def rows(store, sql):
    return store.amavisd.query(sql)


def test_no_arguments_prints_usage(capsys):
    assert main([]) == 0
    assert "--account account" in capsys.readouterr().out


def test_add_stores_valid_entries_and_reports_invalid_ones(tool):
    code, out, err = tool("--add", "--blacklist", "192.0.2.1", "172.16.1.3/21", "10.0.0.1/33", "User@Example.COM")
    assert code == 1
    assert out.splitlines() == [
        "* Establishing SQL connection.",
        "* Add inbound blacklist for account: @.",
        "* Add senders: 192.0.2.1, user@example.com",
    ]
    assert 'perhaps you should use "172.16.0.0/21" instead' in err
    assert '"10.0.0.1/33"' in err
    code, out, _ = tool("--list", "--blacklist")
    assert code == 0
    assert out.splitlines()[2:] == ["192.0.2.1", "user@example.com"]


PRIORITIES = [
    ("@.", 0),
    ("@.example.com", 3),
    ("@.com", 2),
    ("@example.com", 5),
    ("user@example.com", 10),
    ("user@*", 7),
    ("192.0.2.1", 9),
    ("192.0.2.*", 8),
    ("192.0.2.0/24", 7),
    ("2001:db8::/32", 7),
]


def test_priorities_as_iredapd_stores_them(tool):
    entries = [e for e, _ in PRIORITIES]
    assert tool("--account", "@example.org", "--add", "--whitelist", *entries)[0] == 0
    stored = {text(email): p for email, p in rows(tool.store, "SELECT email, priority FROM mailaddr")}
    assert stored == dict(PRIORITIES)
    for account, priority in [("user@example.net", 10), ("@.example.net", 3), ("@.", 0)]:
        tool("--account", account, "--add", "--blacklist", "1.2.3.4")
        got = tool.store.amavisd.query_one("SELECT priority, policy_id FROM users WHERE email = %s", (account,))
        assert got == (priority, 0)


def test_whitelisting_replaces_a_blacklist_entry_of_the_same_pair(tool):
    tool("--add", "--blacklist", "192.0.2.1")
    tool("--add", "--whitelist", "192.0.2.1")
    assert [r[0] for r in rows(tool.store, "SELECT wb FROM wblist")] == ["W"]
    assert tool("--list", "--blacklist")[1].splitlines()[-1] == "* No whitelist/blacklist."


def test_delete_and_delete_all(tool):
    tool("--account", "user@local.com", "--add", "--whitelist", "192.0.2.1", "@x.com", "a@b.com")
    code, out, _ = tool("--account", "user@local.com", "--delete", "--whitelist", "@x.com", "9.9.9.9")
    assert code == 0
    assert out.splitlines() == [
        "* Establishing SQL connection.",
        "* Delete inbound whitelist for account: user@local.com",
        "- Deleted: @x.com",
    ]
    assert tool("--account", "user@local.com", "--list", "--whitelist")[1].splitlines()[2:] == ["192.0.2.1", "a@b.com"]
    code, out, _ = tool("--account", "user@local.com", "--delete-all", "--whitelist")
    assert code == 0 and out.splitlines()[-1] == "* Delete all inbound whitelist for account: user@local.com"
    assert rows(tool.store, "SELECT * FROM wblist") == []


def test_outbound_lists_are_separate(tool):
    tool("--outbound", "--account", "me@local.com", "--add", "--blacklist", "x@ext.com")
    assert tool("--account", "me@local.com", "--list", "--blacklist")[1].splitlines()[-1] == "* No whitelist/blacklist."
    out = tool("--outbound", "--account", "me@local.com", "--list", "--blacklist")[1]
    assert out.splitlines()[1:] == ["* List all outbound blacklist for account: me@local.com", "x@ext.com"]
    assert len(rows(tool.store, "SELECT * FROM outbound_wblist")) == 1


REFUSED = [
    (["--add", "--whitelist", "--blacklist", "192.0.2.1"], 2, "--whitelist and --blacklist conflict"),
    (["--add", "--delete", "--blacklist", "192.0.2.1"], 2, "--add and --delete conflict"),
    (["--list", "--delete-all", "--blacklist"], 2, "--delete-all and --list conflict"),
    (["--add", "--blacklist", "10.0.0.1/33", "junk"], 1, "No valid address given"),
    (["--add", "--blacklist"], 1, "No valid address given"),
    (["--add", "192.0.2.1"], 1, "No --whitelist or --blacklist specified. Exit."),
    (["--whitelist", "192.0.2.1"], 1, "No --add, --delete or --list specified. Exit."),
    (["--account", "nobody", "--add", "--blacklist", "192.0.2.1"], 1, "<<< ERROR >>> Invalid account format."),
    (["--account", "@com", "--add", "--blacklist", "192.0.2.1"], 1, "INVALID_ACCOUNT"),
    (["--account", "@.bad_domain!", "--add", "--blacklist", "192.0.2.1"], 1, 'INVALID_ACCOUNT: "@.bad_domain!"'),
    (["--account", "x@", "--add", "--blacklist", "192.0.2.1"], 1, "INVALID_ACCOUNT"),
    (["--account", "a b@c d", "--add", "--blacklist", "192.0.2.1"], 1, "INVALID_ACCOUNT"),
    (["--account", "user@*", "--add", "--blacklist", "192.0.2.1"], 1, "INVALID_ACCOUNT"),  # never a recipient
    (["--add", "--blacklist", "999.1.1.1", "300.300.300.300", "***.1.1.1"], 1, "No valid address given"),
    (["--add", "--blacklist", "caf\udce9@example.com"], 2, "Argument is not valid UTF-8: caf\\xe9@example.com"),
    (["--add", "--blacklist", "--bogus", "192.0.2.1"], 2, "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("args,code,message", REFUSED)
def test_refused_calls_write_nothing(tool, args, code, message):
    got, _, err = tool(*args)
    assert got == code
    assert message in err
    for table in ("users", "mailaddr", "wblist", "outbound_wblist"):
        assert rows(tool.store, f"SELECT * FROM {table}") == []


def test_account_and_entries_are_lowercased(tool):
    assert tool("--account", "Me@Local.COM", "--add", "--blacklist", "Bad@EXT.com", "@.EXAMPLE.Org")[0] == 0
    assert [text(r[0]) for r in rows(tool.store, "SELECT email FROM users")] == ["me@local.com"]
    code, out, _ = tool("--account", "ME@local.com", "--list", "--blacklist")
    assert code == 0
    assert out.splitlines() == [
        "* Establishing SQL connection.",
        "* List all inbound blacklist for account: me@local.com",
        "@.example.org",
        "bad@ext.com",
    ]


def test_list_is_sorted_and_never_creates_the_account(tool):
    tool("--add", "--whitelist", "z@x.com", "198.51.100.0/24", "a@x.com", "@b.com", "2001:db8::/32")
    assert tool("--list", "--whitelist")[1].splitlines()[2:] == sorted(
        ["z@x.com", "198.51.100.0/24", "a@x.com", "@b.com", "2001:db8::/32"]
    )
    code, out, _ = tool("--account", "nobody@local.com", "--list", "--whitelist")
    assert code == 0 and out.splitlines()[-1] == "* No whitelist/blacklist."
    assert [text(r[0]) for r in rows(tool.store, "SELECT email FROM users")] == ["@."]


def test_delete_reports_each_address_known_to_mailaddr(tool):
    """iRedAPD prints '- Deleted: <addr>' for every given address that exists in mailaddr, listed or not."""
    tool("--account", "other@local.com", "--add", "--blacklist", "known@x.com")
    tool("--account", "user@local.com", "--add", "--blacklist", "listed@x.com")
    code, out, _ = tool(
        "--account", "user@local.com", "--delete", "--blacklist", "listed@x.com", "known@x.com", "n@x.com"
    )
    assert code == 0
    assert out.splitlines()[2:] == ["- Deleted: listed@x.com", "- Deleted: known@x.com"]
    # the other account's entry is untouched
    assert tool("--account", "other@local.com", "--list", "--blacklist")[1].splitlines()[2:] == ["known@x.com"]


def test_delete_only_removes_the_chosen_colour(tool):
    tool("--account", "user@local.com", "--add", "--whitelist", "w@x.com")
    tool("--account", "user@local.com", "--add", "--blacklist", "b@x.com")
    tool("--account", "user@local.com", "--delete", "--blacklist", "w@x.com")
    tool("--account", "user@local.com", "--delete-all", "--blacklist")
    assert tool("--account", "user@local.com", "--list", "--whitelist")[1].splitlines()[2:] == ["w@x.com"]
    assert tool("--account", "user@local.com", "--list", "--blacklist")[1].splitlines()[2:] == [
        "* No whitelist/blacklist."
    ]


def test_outbound_delete_and_delete_all(tool):
    tool("--outbound", "--account", "me@local.com", "--add", "--blacklist", "x@ext.com", "y@ext.com")
    tool("--account", "me@local.com", "--add", "--blacklist", "x@ext.com")  # inbound, same pair of addresses
    code, out, _ = tool("--outbound", "--account", "me@local.com", "--delete", "--blacklist", "x@ext.com")
    assert code == 0 and out.splitlines()[1:] == [
        "* Delete outbound blacklist for account: me@local.com",
        "- Deleted: x@ext.com",
    ]
    assert tool("--outbound", "--account", "me@local.com", "--list", "--blacklist")[1].splitlines()[2:] == ["y@ext.com"]
    tool("--outbound", "--account", "me@local.com", "--delete-all", "--blacklist")
    assert rows(tool.store, "SELECT * FROM outbound_wblist") == []
    assert tool("--account", "me@local.com", "--list", "--blacklist")[1].splitlines()[2:] == ["x@ext.com"]


def test_an_existing_mailaddr_row_keeps_its_priority(tool):
    tool.store.amavisd.execute("INSERT INTO mailaddr (email, priority) VALUES (%s, 42)", ("@x.com",))
    assert tool("--add", "--blacklist", "@x.com", "@y.com")[0] == 0
    stored = {text(e): p for e, p in rows(tool.store, "SELECT email, priority FROM mailaddr")}
    assert stored == {"@x.com": 42, "@y.com": 5}


def test_settings_file_from_apd_settings(tmp_path, capsys, monkeypatch):
    """Without -c the tool reads the daemon's settings file named by $APD_SETTINGS."""
    db_path = tmp_path / "env.sqlite3"
    config = tmp_path / "settings.py"
    config.write_text(f"backend = 'sqlite'\nsqlite_db_path = {str(db_path)!r}\n")
    monkeypatch.setenv("APD_SETTINGS", str(config))
    assert main(["--add", "--blacklist", "192.0.2.1"]) == 0
    _, store = sqlite_store(db_path)
    try:
        assert store.wblist.entries("@.", "B", False) == ["192.0.2.1"]
    finally:
        store.close()


def test_non_utf8_argument_exits_2_without_traceback(tool, tmp_path):
    config = tmp_path / "settings.py"
    run = subprocess.run(
        [sys.executable, "-m", "admin.wblist_admin", "-c", str(config), "--account", b"\xff@example.com"]
        + ["--add", "--whitelist", "192.0.2.1"],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=str(ROOT),
        timeout=60,
    )
    assert (run.returncode, run.stdout, run.stderr) == (
        2,
        b"",
        b"<<< ERROR >>> Argument is not valid UTF-8: \\xff@example.com\n",
    )
    for table in ("users", "mailaddr", "wblist", "outbound_wblist"):
        assert rows(tool.store, f"SELECT * FROM {table}") == []

"""spf_to_greylist_whitelists end to end: real DNS (dnsmasq), real SQL (SQLite, MariaDB, PostgreSQL).

The zone is in tests/helpers/dnsmasq.py (wl-*.test names).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin import spf_to_greylist_whitelists as tool
from apd import settings as settings_module
from apd.store import open_store
from apd.store.greylisting_whitelists import (
    DEFAULT_WHITELIST_DOMAINS,
    create_tables_and_seed,
    seed_whitelist_domains,
    whitelist_domains_table_exists,
)
from tests.helpers.apd_process import settings_text
from tests.helpers.backends import SQL_BACKENDS, open_fresh_store

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]

WL_ONE = ["192.0.2.101", "@wl-one.test", "198.51.100.0/24", "2001:db8:100::/48", "198.51.100.200"]


@pytest.fixture(params=SQL_BACKENDS)
def tool_env(request, tmp_path, dns_server):
    """A settings file for the tool (dnsmasq resolver) and an open database, on each SQL backend."""
    kind = request.param
    server = None
    if kind == "sqlite":
        values = {"backend": "sqlite", "sqlite_db_path": str(tmp_path / "apd.sqlite3")}
    else:
        server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
        values = server.apd_settings("apd")
    values.update(DNS_NAMESERVERS=[dns_server.nameserver], DNS_QUERY_TIMEOUT=0.4, SPF_TIME_BUDGET=1.0)
    path = tmp_path / "settings.py"
    path.write_text(settings_text(values))
    store = open_fresh_store(kind, settings_module.load(str(path)), server)
    db = store.iredapd
    db.execute("DELETE FROM greylisting_whitelist_domains")  # a known start: not the seeded defaults
    yield path, db
    store.close()


def run_tool(config: Path, *args: str) -> int:
    return tool.main(["-c", str(config), *args])


def spf_rows(db) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for account, sender, comment in db.query("SELECT account, sender, comment FROM greylisting_whitelist_domain_spf"):
        assert account == "@."
        rows.setdefault(comment, []).append(sender)
    return {comment: sorted(senders) for comment, senders in rows.items()}


def add_tracking(db, client: str) -> None:
    db.execute(
        "INSERT INTO greylisting_tracking (sender, recipient, client_address, init_time, block_expired,"
        " record_expired, blocked_count) VALUES (%s, %s, %s, 1, 2, 3, 1)",
        ("s@example.net", "r@example.com", client),
    )


def tracked(db) -> list[str]:
    return sorted(row[0] for row in db.query("SELECT client_address FROM greylisting_tracking"))


def test_domains_given_on_the_command_line(tool_env, capsys):
    config, db = tool_env
    assert run_tool(config, "wl-one.test", "WL-Two.test", "wl-mx.test", "wl-nx.test", "wl-one.test") == 0
    out = capsys.readouterr().out
    assert out == (
        "* 4 mail domains in total.\n\t+ [wl-one.test]\n\t+ [wl-two.test]\n\t+ [wl-mx.test]\n\t+ [wl-nx.test]\n"
    )
    assert spf_rows(db) == {
        "AUTO-UPDATE: wl-one.test": sorted(WL_ONE),
        # 192.0.2.101 and the shared include are already stored under wl-one.test
        "AUTO-UPDATE: wl-two.test": ["192.0.2.102"],
        # no SPF: the IPv4 addresses of the MX hosts
        "AUTO-UPDATE: wl-mx.test": ["192.0.2.110", "192.0.2.111"],
    }
    assert db.query("SELECT domain FROM greylisting_whitelist_domains") == []  # no --submit


def test_refresh_replaces_old_rows_and_forgets_tracking(tool_env, capsys):
    config, db = tool_env
    db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES (%s, %s, %s), (%s, %s, %s)",
        ("@.", "203.0.113.99", "AUTO-UPDATE: wl-one.test", "@.", "203.0.113.98", "AUTO-UPDATE: other.test"),
    )
    db.execute(
        "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES (%s, %s, %s), (%s, %s, %s)",
        ("@.", "203.0.113.97", "AUTO-UPDATE: wl-one.test", "@.", "203.0.113.96", "kept by hand"),
    )
    for client in ("192.0.2.101", "198.51.100.200", "198.51.100.5", "192.0.2.250"):
        add_tracking(db, client)
    assert run_tool(config, "wl-one.test") == 0
    assert spf_rows(db) == {"AUTO-UPDATE: wl-one.test": sorted(WL_ONE), "AUTO-UPDATE: other.test": ["203.0.113.98"]}
    assert db.query("SELECT sender, comment FROM greylisting_whitelists") == [("203.0.113.96", "kept by hand")]
    # exact client_address matches only: a client inside a whitelisted network keeps its row
    assert tracked(db) == ["192.0.2.250", "198.51.100.5"]


def test_without_arguments_every_whitelisted_domain_is_refreshed(tool_env, capsys):
    config, db = tool_env
    for domain in ("wl-mx.test", "wl-one.test", "not a domain"):
        db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", (domain,))
    assert run_tool(config) == 1  # the invalid stored name is reported
    captured = capsys.readouterr()
    assert captured.out == (
        "* Query SQL server to get mail domain names.\n"
        "* 2 mail domains in total.\n"
        "\t+ [wl-mx.test]\n"
        "\t+ [wl-one.test]\n"
    )
    assert "'not a domain'" in captured.err
    assert set(spf_rows(db)) == {"AUTO-UPDATE: wl-mx.test", "AUTO-UPDATE: wl-one.test"}


def test_nothing_found_deletes_nothing(tool_env, capsys):
    config, db = tool_env
    db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES (%s, %s, %s)",
        ("@.", "192.0.2.1", "AUTO-UPDATE: wl-empty.test"),
    )
    assert run_tool(config, "wl-empty.test", "wl-nx.test") == 0
    assert capsys.readouterr().out.endswith("\t+ [wl-nx.test]\n* No IP address/network found. Exit.\n")
    assert spf_rows(db) == {"AUTO-UPDATE: wl-empty.test": ["192.0.2.1"]}


def test_a_domain_with_an_empty_result_loses_its_rows_when_others_found_some(tool_env, capsys):
    config, db = tool_env
    db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES (%s, %s, %s)",
        ("@.", "192.0.2.1", "AUTO-UPDATE: wl-empty.test"),
    )
    assert run_tool(config, "wl-empty.test", "wl-mx.test") == 0
    assert spf_rows(db) == {"AUTO-UPDATE: wl-mx.test": ["192.0.2.110", "192.0.2.111"]}


def test_submit_stores_the_domains(tool_env, capsys):
    config, db = tool_env
    assert run_tool(config, "--submit", "wl-mx.test", "wl-one.test") == 0
    assert capsys.readouterr().out.endswith("* Store domain names in SQL database as greylisting whitelists.\n")
    assert sorted(r[0] for r in db.query("SELECT domain FROM greylisting_whitelist_domains")) == [
        "wl-mx.test",
        "wl-one.test",
    ]
    assert run_tool(config, "--submit", "wl-mx.test") == 0  # a duplicate is reported, not fatal
    assert capsys.readouterr().out.splitlines()[-1].startswith("<<< ERROR >>> ")


def test_invalid_domains_are_reported_and_the_valid_ones_processed(tool_env, capsys):
    config, db = tool_env
    assert run_tool(config, "bad_domain", "wl-mx.test") == 1
    captured = capsys.readouterr()
    assert "Invalid domain name: 'bad_domain'" in captured.err
    assert "\t+ [wl-mx.test]" in captured.out
    assert "AUTO-UPDATE: wl-mx.test" in spf_rows(db)
    assert run_tool(config, "nodot") == 1
    assert capsys.readouterr().out == "* No valid domain names. Abort.\n"


def test_debug_prints_what_was_found(tool_env, capsys):
    config, _ = tool_env
    assert run_tool(config, "--debug", "wl-mx.test") == 0
    out = capsys.readouterr().out
    assert "\t\t- 192.0.2.110\n" in out and "\t\t- 192.0.2.111\n" in out


def test_a_slow_domain_costs_at_most_the_budget(tool_env, capsys):
    import time

    config, db = tool_env
    started = time.monotonic()
    assert run_tool(config, "slowchain.spf.test", "wl-mx.test") == 0
    assert time.monotonic() - started < 1.0 + 0.8
    assert spf_rows(db)["AUTO-UPDATE: slowchain.spf.test"] == ["192.0.2.90"]


def test_console_script_runs_as_a_subprocess(tool_env):
    config, db = tool_env
    result = subprocess.run(
        [sys.executable, "-m", "admin.spf_to_greylist_whitelists", "-c", str(config), "wl-mx.test"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "* 1 mail domains in total.\n\t+ [wl-mx.test]\n"
    assert spf_rows(db) == {"AUTO-UPDATE: wl-mx.test": ["192.0.2.110", "192.0.2.111"]}


def test_init_db_seeds_a_new_database_once(tmp_path):
    path = tmp_path / "settings.py"
    path.write_text(settings_text({"backend": "sqlite", "sqlite_db_path": str(tmp_path / "new.sqlite3")}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(path), "--init-db"], capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr
    assert f"{len(DEFAULT_WHITELIST_DOMAINS)} default domains added" in first.stdout + first.stderr
    store = open_store(settings_module.load(str(path)))
    db = store.iredapd
    assert sorted(r[0] for r in db.query("SELECT domain FROM greylisting_whitelist_domains")) == sorted(
        DEFAULT_WHITELIST_DOMAINS
    )
    db.execute("DELETE FROM greylisting_whitelist_domains WHERE domain = %s", ("aol.com",))
    second = subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(path), "--init-db"], capture_output=True, text=True, env=env
    )
    assert second.returncode == 0 and "default domains added" not in second.stdout + second.stderr
    assert db.query("SELECT 1 FROM greylisting_whitelist_domains WHERE domain = %s", ("aol.com",)) == []
    store.close()


def test_seeding_inserts_only_missing_domains(sql_backend):
    db = sql_backend.iredapd
    db.execute("DELETE FROM greylisting_whitelist_domains")
    db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", ("aol.com",))
    assert whitelist_domains_table_exists(db)
    assert seed_whitelist_domains(db) == len(DEFAULT_WHITELIST_DOMAINS) - 1
    assert seed_whitelist_domains(db) == 0
    assert create_tables_and_seed(db, lambda: None) == 0  # an existing table is never re-seeded


def test_default_domains_are_valid_and_unique():
    assert 40 <= len(DEFAULT_WHITELIST_DOMAINS) == len(set(DEFAULT_WHITELIST_DOMAINS))
    assert tool.valid_domains(DEFAULT_WHITELIST_DOMAINS) == (list(DEFAULT_WHITELIST_DOMAINS), [])


def test_a_domain_already_expanded_by_an_earlier_one_is_skipped(tool_env, capsys):
    config, db = tool_env
    db.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES (%s, %s, %s)",
        ("@.", "192.0.2.1", "AUTO-UPDATE: _spf.wl-big.test"),
    )
    assert run_tool(config, "wl-one.test", "_spf.wl-big.test") == 0
    assert capsys.readouterr().out == "* 2 mail domains in total.\n\t+ [wl-one.test]\n"
    rows = spf_rows(db)
    assert rows["AUTO-UPDATE: wl-one.test"] == sorted(WL_ONE)
    assert rows["AUTO-UPDATE: _spf.wl-big.test"] == ["192.0.2.1"]  # not processed, so not touched

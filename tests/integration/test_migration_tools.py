"""apd-migrate-cluebringer-greylisting, apd-migrate-cluebringer-throttle and
apd-fix-throttle-priority for real: a Cluebringer database with sample rows on MariaDB and
PostgreSQL, migrated into apd's schema and into iRedAPD's (../shared/iredmail)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from admin.cluebringer import PASSWORD_ENV
from tests.helpers.apd_process import free_port, settings_text
from tests.helpers.sql_server import PASSWORD
from tests.integration.greylisting_backends import open_backend

pytestmark = pytest.mark.servers

SOURCE_DB = "cluebringer_test"
# Cluebringer's own tables, cut to the columns the migrations read (its lowercase names work on both).
CLUEBRINGER_TABLES = (
    "CREATE TABLE policy_groups (id INTEGER PRIMARY KEY, name VARCHAR(255), disabled SMALLINT DEFAULT 0)",
    "CREATE TABLE policy_group_members (id INTEGER PRIMARY KEY, policygroupid INTEGER, member VARCHAR(255),"
    " disabled SMALLINT DEFAULT 0)",
    "CREATE TABLE greylisting (id INTEGER PRIMARY KEY, policyid INTEGER, name VARCHAR(255), usegreylisting SMALLINT,"
    " disabled SMALLINT DEFAULT 0)",
    "CREATE TABLE greylisting_whitelist (id INTEGER PRIMARY KEY, source VARCHAR(255), comment VARCHAR(1024),"
    " disabled SMALLINT DEFAULT 0)",
    "CREATE TABLE quotas (id INTEGER PRIMARY KEY, policyid INTEGER, name VARCHAR(255), track VARCHAR(255),"
    " period BIGINT, verdict VARCHAR(255), disabled SMALLINT DEFAULT 0)",
    "CREATE TABLE quotas_limits (id INTEGER PRIMARY KEY, quotasid INTEGER, type VARCHAR(255), counterlimit BIGINT,"
    " disabled SMALLINT DEFAULT 0)",
)
CLUEBRINGER_ROWS = (
    "INSERT INTO policy_groups (id, name) VALUES (1, 'internal_ips'), (2, 'no_greylisting_for_internal')",
    "INSERT INTO policy_group_members (id, policygroupid, member) VALUES (1, 2, '@example.com'),"
    " (2, 2, 'boss@example.org'), (3, 2, '192.168.0.0/16'), (4, 2, '$internal_ips'), (5, 1, '10.0.0.1')",
    "INSERT INTO greylisting (id, policyid, name, usegreylisting) VALUES (1, 2, 'Greylisting Inbound Emails', 1)",
    "INSERT INTO greylisting_whitelist (id, source, comment, disabled) VALUES"
    " (1, 'SenderIP:192.0.2.0/24', 'mail.example.net servers', 0), (2, 'SenderIP:198.51.100.7', 'old', 1),"
    " (3, 'SenderDomain:example.net', 'domain', 0), (4, 'SenderIP:bogus', 'x', 0)",
    "INSERT INTO quotas (id, policyid, name, track, period, verdict, disabled) VALUES"
    " (1, 3, 'default_outbound', 'Sender:user@domain', 3600, 'REJECT', 0),"
    " (2, 3, 'outbound_Boss@Example.org', 'Sender:user@domain', 86400, 'REJECT', 0),"
    " (3, 4, 'inbound_example.com', 'Recipient:@domain', 60, 'REJECT', 0),"
    " (4, 4, 'inbound_old.example', 'Recipient:@domain', 60, 'REJECT', 1),"
    " (5, 4, 'rate_limit', 'Sender:user@domain', 60, 'REJECT', 0)",
    "INSERT INTO quotas_limits (id, quotasid, type, counterlimit, disabled) VALUES"
    " (1, 1, 'MessageCount', 100, 0), (2, 2, 'MessageCount', 500, 0), (3, 2, 'MessageCumulativeSize', 104857600, 0),"
    " (4, 3, 'MessageCumulativeSize', 2000000, 0), (5, 3, 'MessageCount', 7, 1)",
)


@pytest.fixture(params=["mysql", "pgsql", "mysql:iredmail", "pgsql:iredmail"])
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    server = request.getfixturevalue("mariadb_server" if b.kind == "mysql" else "postgres_server")
    make_cluebringer_db(server)
    b.server = server
    b.db.execute("DELETE FROM greylisting")
    b.db.execute("DELETE FROM greylisting_whitelists")
    b.db.execute("DELETE FROM throttle")
    b.source_flags = ["--host", "127.0.0.1", "--port", str(server.port), "--database", SOURCE_DB, "--user", "iredapd"]
    yield b
    b.close()


def make_cluebringer_db(server) -> None:
    if server.backend == "mysql":
        server.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB}")
        server.execute(f"CREATE DATABASE {SOURCE_DB}")
        for host in ("127.0.0.1", "localhost"):
            server.execute(f"GRANT SELECT ON {SOURCE_DB}.* TO 'iredapd'@'{host}'")
        for sql in CLUEBRINGER_TABLES + CLUEBRINGER_ROWS:
            server.execute(sql, database=SOURCE_DB)
    else:
        server.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB}")
        server.execute(f"CREATE DATABASE {SOURCE_DB}")
        for sql in CLUEBRINGER_TABLES + CLUEBRINGER_ROWS:
            server.execute(sql, database=SOURCE_DB)
        server.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO iredapd", database=SOURCE_DB)


def tool(backend, name: str, *argv: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(PASSWORD_ENV, None)
    if password is not None:
        env[PASSWORD_ENV] = password
    return subprocess.run(
        [sys.executable, "-m", f"admin.{name}", "-c", str(backend.settings_file), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def greylisting_rows(backend):
    rows = backend.db.query("SELECT account, priority, sender, sender_priority, active FROM greylisting")
    return sorted(tuple(r) for r in rows)


def throttle_rows(backend):
    rows = backend.db.query(
        "SELECT account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota FROM throttle"
    )
    return sorted(tuple(r) for r in rows)


def test_greylisting_migration_and_a_second_run(backend):
    done = tool(backend, "migrate_cluebringer_greylisting", *backend.source_flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "+ Enabled global greylisting.",
        "+ Disabled greylisting for @example.com.",
        "+ Disabled greylisting for boss@example.org.",
        "+ Disabled greylisting for 192.168.0.0/16.",
        "[SKIP] Not a valid account: $internal_ips",
        "+ Whitelisted 192.0.2.0/24 for everyone.",
        "[SKIP] Not an IP address or network: SenderIP:bogus",
    ]
    assert greylisting_rows(backend) == [
        ("192.168.0.0/16", 70, "@.", 0, 0),
        ("@.", 0, "@.", 0, 1),
        ("@example.com", 60, "@.", 0, 0),
        ("boss@example.org", 100, "@.", 0, 0),
    ]
    whitelists = backend.db.query("SELECT account, sender, comment FROM greylisting_whitelists")
    assert [tuple(r) for r in whitelists] == [("@.", "192.0.2.0/24", "Mail.Example.Net Servers")]
    again = tool(backend, "migrate_cluebringer_greylisting", *backend.source_flags)
    assert again.returncode == 0
    assert again.stdout.splitlines()[:2] == [
        "[SKIP] Global greylisting setting exists, kept.",
        "[SKIP] Greylisting setting of @example.com exists, kept.",
    ]
    assert "[SKIP] Whitelist of 192.0.2.0/24 exists, kept." in again.stdout
    assert len(greylisting_rows(backend)) == 4


def test_throttle_migration_then_priority_fix(backend):
    done = tool(backend, "migrate_cluebringer_throttle", *backend.source_flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Total 4 throttle settings.",
        "+ outbound throttle of @.: period=3600, max_msgs=100, max_quota=-1, priority=0.",
        "+ outbound throttle of boss@example.org: period=86400, max_msgs=500, max_quota=104857600, priority=100.",
        "+ inbound throttle of @example.com: period=60, max_msgs=-1, max_quota=2000000, priority=60.",
        "[SKIP] Not an inbound_*/outbound_*/default_* quota: rate_limit",
    ]
    migrated = [
        ("@.", "outbound", 0, 3600, -1, -1, 100, -1),
        ("@example.com", "inbound", 60, 60, -1, -1, -1, 2000000),
        ("boss@example.org", "outbound", 100, 86400, -1, -1, 500, 104857600),
    ]
    assert throttle_rows(backend) == migrated
    again = tool(backend, "migrate_cluebringer_throttle", *backend.source_flags)
    assert "[SKIP] Throttle setting of boss@example.org (outbound) exists, kept." in again.stdout
    assert throttle_rows(backend) == migrated

    assert tool(backend, "fix_throttle_priority").stdout == ""  # all right already
    backend.db.execute("UPDATE throttle SET priority = 5 WHERE account IN ('@.', '@example.com')")
    fixed = tool(backend, "fix_throttle_priority")
    assert fixed.returncode == 0
    assert fixed.stdout.splitlines() == [
        "Fixed throttle priority: account=@., priority: 5 -> 0.",
        "Fixed throttle priority: account=@example.com, priority: 5 -> 60.",
    ]
    assert throttle_rows(backend) == migrated


def test_many_rows_are_fixed_page_by_page(backend):
    for n in range(230):
        backend.db.execute(
            "INSERT INTO throttle (account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota)"
            " VALUES (%s, 'outbound', 1, 60, -1, -1, 5, -1)",
            (f"user{n}@example.com",),
        )
    fixed = tool(backend, "fix_throttle_priority")
    assert fixed.returncode == 0
    assert len(fixed.stdout.splitlines()) == 230
    assert {r[2] for r in throttle_rows(backend)} == {100}


def test_no_quotas_and_no_settings(backend):
    assert tool(backend, "fix_throttle_priority").stdout == "No throttle settings, no need to fix. Skip.\n"
    backend.server.execute("DELETE FROM quotas_limits", database=SOURCE_DB)
    backend.server.execute("DELETE FROM quotas", database=SOURCE_DB)
    none = tool(backend, "migrate_cluebringer_throttle", *backend.source_flags)
    assert (none.returncode, none.stdout) == (0, "No throttle settings found. Exit.\n")
    flags = [*backend.source_flags, "--database", "nonexistent_db_x"]
    failed = tool(backend, "migrate_cluebringer_throttle", *flags)
    assert failed.returncode == 1 and "<<< ERROR >>>" in failed.stderr and "Traceback" not in failed.stderr


def test_incomplete_or_wrong_credentials(backend):
    missing = tool(backend, "migrate_cluebringer_greylisting", *backend.source_flags, password=None)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "Incorrect database info, please update cluebringer_db_* parameters."
    wrong = tool(backend, "migrate_cluebringer_throttle", *backend.source_flags, password="wrong")
    assert wrong.returncode == 1 and "<<< ERROR >>>" in wrong.stderr and "Traceback" not in wrong.stderr
    assert PASSWORD not in wrong.stderr and "wrong" not in wrong.stderr.replace("<<< ERROR >>>", "")
    bad_port = tool(backend, "migrate_cluebringer_throttle", "--port", "0")
    assert bad_port.returncode == 2 and "port must be 1-65535" in bad_port.stderr
    assert greylisting_rows(backend) == [] and throttle_rows(backend) == []


def assert_refused(done: subprocess.CompletedProcess, naming: str = "") -> None:
    assert done.returncode == 1, done.stdout
    assert "<<< ERROR >>> " in done.stderr and naming in done.stderr and "Traceback" not in done.stderr


def test_missing_tables_refused_connection_and_bad_flags(backend):
    backend.server.execute("DROP TABLE quotas_limits", database=SOURCE_DB)
    by_flags = [*backend.source_flags, "--password", PASSWORD]  # and the dialect by iRedAPD's word
    assert_refused(
        tool(backend, "migrate_cluebringer_throttle", *by_flags, "--backend", backend.kind, password=None),
        "quotas_limits",
    )
    backend.server.execute("DROP TABLE greylisting_whitelist", database=SOURCE_DB)
    missing = tool(backend, "migrate_cluebringer_greylisting", *backend.source_flags)
    assert_refused(missing, "greylisting_whitelist")
    assert "+ Enabled global greylisting." in missing.stdout  # what came before the missing table stays
    assert_refused(tool(backend, "migrate_cluebringer_greylisting", *backend.source_flags, "--port", str(free_port())))
    for flags, message in (
        (["--dialect", "oracle"], "invalid choice: 'oracle'"),
        (["--port", "abc"], "invalid int value: 'abc'"),
        (["--host"], "expected one argument"),
    ):
        bad = tool(backend, "migrate_cluebringer_greylisting", *flags)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    assert throttle_rows(backend) == []


def test_fix_on_a_database_without_the_throttle_table(backend, tmp_path):
    """Connected, but the query fails: iRedAPD's 'An error occurred' and exit 255."""
    settings = tmp_path / "cluebringer-as-iredapd.py"
    settings.write_text(settings_text(dict(backend.values, iredapd_db_name=SOURCE_DB)))
    out = subprocess.run(
        [sys.executable, "-m", "admin.fix_throttle_priority", "-c", str(settings)], capture_output=True, text=True
    )
    assert out.returncode == 255
    assert out.stdout.startswith("ERROR: An error occurred: ") and "Traceback" not in out.stderr


def test_fix_without_a_database(tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text(
        "backend = 'mysql'\niredapd_db_server = '127.0.0.1'\niredapd_db_port = 1\n"
        "vmail_db_port = 1\namavisd_db_port = 1\niredapd_db_password = 'x'\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "admin.fix_throttle_priority", "-c", str(settings)], capture_output=True, text=True
    )
    assert (out.returncode, out.stdout) == (1, "ERROR: Failed to connect to iredapd database.\n")


def test_fix_on_a_new_sqlite_store(tmp_path):
    """The embedded store's tables are made on first use, as by the other tools (was: exit 255)."""
    settings = tmp_path / "settings.py"
    settings.write_text(settings_text({"backend": "sqlite", "sqlite_db_path": str(tmp_path / "apd.sqlite3")}))
    out = subprocess.run(
        [sys.executable, "-m", "admin.fix_throttle_priority", "-c", str(settings)], capture_output=True, text=True
    )
    assert (out.returncode, out.stdout) == (0, "No throttle settings, no need to fix. Skip.\n")

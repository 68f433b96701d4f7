"""White/blacklists on SQLite, MariaDB and PostgreSQL (real servers; the iRedMail amavisd and
iredapd schemas from ../shared/iredmail when present, else apd's own DDL).

* the repository: bytes vs text on VARBINARY/BYTEA, IPv6, the change marker;
* the check and wblist_rdns in process on each backend;
* a running apd (two workers): a list written by apd-wblist-admin or by plain SQL changes the
  very next answer of every worker; delete and delete-all undo it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apd.checks.amavisd_wblist import AmavisdWblist
from apd.checks.wblist_rdns import WblistRdns
from apd.store import open_store
from apd.store.wblist import text
from tests.helpers.backends import open_fresh_store, sqlite_settings
from tests.helpers.policy_client import rcpt
from tests.helpers.wblist import ask, rcpt_request

ROOT = Path(__file__).resolve().parents[2]
REJECT, OK, DUNNO = "REJECT Blacklisted", "OK", "DUNNO"


def schema_of(server: Any) -> str:
    return "iredmail" if "iredmail" in server.schemas else "apd"


@pytest.fixture(params=["sqlite", "mysql", "pgsql"])
def backend(request, tmp_path):
    """(kind, server or None, Settings) with empty tables."""
    kind = request.param
    if kind == "sqlite":
        settings = sqlite_settings(tmp_path)
        open_fresh_store(kind, settings).close()
        return kind, None, settings
    server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
    schema = schema_of(server)
    server.truncate(schema)
    return kind, server, server.settings(schema)


@pytest.fixture
def store(backend):
    store = open_store(backend[2])
    yield store
    store.close()


def plain_sql(backend, db: str, statement: str) -> None:
    """A change made outside apd: SQL text as an administrator (or iRedAdmin) would type it."""
    kind, server, settings = backend
    if kind == "sqlite":
        with sqlite3.connect(settings.sqlite_db_path) as conn:
            conn.execute(statement)
        return
    server.execute(statement, database=server.db_name(schema_of(server), db))


# --- repository


def test_emails_round_trip_as_bytes(store):
    lists = store.wblist
    lists.add("User@Local.com".lower(), ["friend@x.com", "2001:db8::/32", "198.51.100.0/24", "@."], "W", False)
    assert lists.entries("user@local.com", "W", False) == ["198.51.100.0/24", "2001:db8::/32", "@.", "friend@x.com"]
    # VARBINARY/BYTEA compare bytes: case matters, as it does for Amavisd
    assert lists.entries("USER@local.com", "W", False) == []
    rows = store.amavisd.query("SELECT email FROM mailaddr")
    assert sorted(text(r[0]) for r in rows) == ["198.51.100.0/24", "2001:db8::/32", "@.", "friend@x.com"]
    assert lists.delete("user@local.com", ["@.", "nobody@x.com"], "W", False) == ["@."]
    assert lists.delete_all("user@local.com", "W", False) == 3
    assert lists.entries("user@local.com", "W", False) == []


def test_lookup_rows_and_marker(store):
    lists = store.wblist
    lists.add("user@local.com", ["friend@x.com"], "W", False)
    lists.add("@.", ["198.51.100.0/24"], "B", False)
    ids = dict((e, i) for i, e in lists.mailaddr_above(-1))
    result = lists.lookup(
        (["user@local.com", "@."], ["friend@x.com", "198.51.100.7"]), None, [ids["198.51.100.0/24"]], -1
    )
    got = sorted((r.direction, r.local_email, r.ext_email, r.wb) for r in result.rows)
    assert got == [("in", "user@local.com", "friend@x.com", "W"), ("in-net", "@.", "198.51.100.0/24", "B")]
    assert result.marker == (2, max(ids.values()))


def test_check_in_process(backend, store):
    settings = backend[2]
    check = AmavisdWblist(settings, store)
    store.wblist.add("@.", ["198.51.100.0/24", "2001:db8:bad::/48", "@spam.example"], "B", False)
    store.wblist.add("user@local.com", ["@spam.example"], "W", False)
    assert ask(check, store, client_address="198.51.100.20") == REJECT
    assert ask(check, store, client_address="2001:db8:bad::1") == REJECT
    assert ask(check, store, client_address="2001:db8:900d::1") is None
    assert ask(check, store, sender="a@spam.example", client_address="192.0.2.1") == OK
    assert ask(check, store, sender="a@spam.example", recipient="other@local.com", client_address="192.0.2.1") == REJECT
    store.wblist.add("me@local.com", ["@ext.example"], "B", True)
    out = {"sasl_username": "me@local.com", "sender": "me@local.com", "client_address": "192.0.2.1"}
    assert ask(check, store, recipient="x@ext.example", **out) == REJECT


def test_rdns_in_process(backend, store):
    plain_sql(backend, "iredapd", "INSERT INTO wblist_rdns (rdns, wb) VALUES ('.dyn.example.net', 'B')")
    plain_sql(backend, "iredapd", "INSERT INTO wblist_rdns (rdns, wb) VALUES ('ok.dyn.example.net', 'W')")
    check = WblistRdns(backend[2], store)
    from apd.context import RequestContext
    from apd.netmatch import TrustedClients

    for rdns, expected in [("h1.dyn.example.net", REJECT), ("ok.dyn.example.net", DUNNO), ("x.example.org", None)]:
        request = rcpt_request(reverse_client_name=rdns)
        assert check.check(request, RequestContext(request, store, TrustedClients([]))) == expected


# --- a running apd


def admin(settings_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "admin.wblist_admin", "-c", str(settings_path), *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
    )


def answers(apd, connections: int = 6, **attrs: str) -> set[str]:
    """The answers of several fresh connections (so that every worker answers at least once
    with high probability); one request each."""
    seen = set()
    for _ in range(connections):
        with apd.client() as client:
            seen.add(client.ask(**rcpt(**attrs)))
    return seen


def test_daemon_follows_admin_tool_and_plain_sql(backend, apd_factory):
    kind, server, settings = backend
    extra = {"sqlite_db_path": settings.sqlite_db_path} if kind == "sqlite" else server.apd_settings(schema_of(server))
    apd = apd_factory(plugins=["amavisd_wblist"], workers=2, **extra)
    v4 = {"client_address": "203.0.113.9"}
    v6 = {"client_address": "2001:db8:beef::25"}
    assert answers(apd, **v4) == {DUNNO}  # every worker has loaded its (empty) tree

    done = admin(apd.settings_path, "--add", "--blacklist", "203.0.113.0/24")
    assert done.returncode == 0, done.stderr
    assert answers(apd, **v4) == {REJECT}
    assert answers(apd, client_address="203.0.114.9") == {DUNNO}

    # an administrator adds an IPv6 network by hand, on "another host"
    plain_sql(backend, "amavisd", "INSERT INTO mailaddr (email, priority) VALUES ('2001:db8:beef::/48', 7)")
    plain_sql(
        backend,
        "amavisd",
        "INSERT INTO wblist (rid, sid, wb) SELECT u.id, m.id, 'B' FROM users u, mailaddr m"
        " WHERE u.email = '@.' AND m.email = '2001:db8:beef::/48'",
    )
    assert answers(apd, **v6) == {REJECT}

    # a per-user whitelist beats the global blacklist
    done = admin(apd.settings_path, "--account", "user@example.com", "--add", "--whitelist", "203.0.113.9")
    assert done.returncode == 0, done.stderr
    assert answers(apd, **v4) == {OK}
    assert answers(apd, recipient="other@example.com", **v4) == {REJECT}

    done = admin(apd.settings_path, "--delete", "--blacklist", "203.0.113.0/24")
    assert done.returncode == 0 and "- Deleted: 203.0.113.0/24" in done.stdout, done.stdout + done.stderr
    assert answers(apd, recipient="other@example.com", **v4) == {DUNNO}

    done = admin(apd.settings_path, "--delete-all", "--blacklist")
    assert done.returncode == 0, done.stderr
    assert answers(apd, **v6) == {DUNNO}

    done = admin(apd.settings_path, "--list", "--blacklist")
    assert done.stdout.splitlines()[-1] == "* No whitelist/blacklist."


def test_one_statement_per_request_on_mariadb(mariadb_server):
    """Counted by the server itself (general query log): one amavisd statement per request, and
    after a change to mailaddr one more (the rows above the mark), not a reload."""
    schema = schema_of(mariadb_server)
    mariadb_server.truncate(schema)
    settings = mariadb_server.settings(schema)
    store = open_store(settings)
    try:
        store.wblist.add("@.", ["198.51.100.0/24", "@x.com"], "B", False)
        store.wblist.add("user@local.com", ["friend@x.com"], "W", False)
        check = AmavisdWblist(settings, store)

        def statements_during(action) -> list[str]:
            mariadb_server.execute("TRUNCATE TABLE mysql.general_log")
            mariadb_server.execute("SET GLOBAL log_output = 'TABLE'")
            mariadb_server.execute("SET GLOBAL general_log = 1")
            try:
                action()
            finally:
                mariadb_server.execute("SET GLOBAL general_log = 0")
            rows = mariadb_server.query(
                "SELECT argument FROM mysql.general_log WHERE command_type = 'Query' AND user_host LIKE 'amavisd%%'"
            )
            return [text(r[0]) for r in rows if "mailaddr" in text(r[0])]

        def requests() -> None:
            assert ask(check, store) == OK
            assert ask(check, store, sender="a@x.com") == REJECT
            assert ask(check, store, sender="a@y.org") == REJECT  # through the network
            assert ask(check, store, sender="a@y.org", client_address="192.0.2.1") is None

        assert len(statements_during(requests)) == 4
        store.wblist.add("@.", ["192.0.2.0/24"], "B", False)
        seen = statements_during(lambda: ask(check, store, sender="a@y.org", client_address="192.0.2.1"))
        assert len(seen) == 3, seen  # lookup, rows above the mark, lookup with the new network
    finally:
        store.close()


def test_concurrent_admin_adds_do_not_collide(backend, tmp_path):
    kind, server, settings = backend
    values = {"sqlite_db_path": settings.sqlite_db_path} if kind == "sqlite" else server.apd_settings(schema_of(server))
    config = tmp_path / "settings.py"
    config.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()) + f"backend = {kind!r}\n")
    entries = ["192.0.2.0/24", "2001:db8::/32", "a@x.com", "@y.org"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "admin.wblist_admin", "-c", str(config), "--add", colour, *entries],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        for colour in ("--blacklist", "--whitelist", "--blacklist")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
    store = open_store(settings)
    try:
        rows = store.amavisd.query("SELECT rid, sid, wb FROM wblist")
        assert len(rows) == 4 and {r[2] for r in rows} <= {"W", "B"}
        assert len(store.amavisd.query("SELECT id FROM mailaddr")) == 4
        assert len(store.amavisd.query("SELECT id FROM users")) == 1
    finally:
        store.close()

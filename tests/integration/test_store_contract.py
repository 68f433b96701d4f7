"""The repository contract, run on SQLite, MariaDB and PostgreSQL, on data in apd's own DDL
and (servers only) in the real iRedMail/iRedAPD schemas from ../shared/iredmail.

Accounts (schemas.md §3.2), the smtp_sessions log, duplicate keys, transactions, and
hostile input that must be stored and compared literally.
"""

from __future__ import annotations

import time

import pytest

from apd.errors import DuplicateKey, StoreError
from apd.store.sessions import COLUMNS, session_row
from tests.helpers.mysql_drivers import case_id, driver_schema_cases, driver_store

pytestmark = pytest.mark.servers


@pytest.fixture(params=driver_schema_cases(), ids=case_id)
def store(request, tmp_path, monkeypatch):
    """``schema_store``, with MariaDB on each driver (mysqlclient, PyMySQL)."""
    yield from driver_store(request, tmp_path, monkeypatch)


def add_domain(store, domain: str, active: int = 1, backupmx: int = 0) -> None:
    store.vmail.execute(
        "INSERT INTO domain (domain, transport, backupmx, active) VALUES (%s, %s, %s, %s)",
        (domain, "dovecot", backupmx, active),
    )


def add_alias_domain(store, alias: str, target: str) -> None:
    store.vmail.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES (%s, %s)", (alias, target))


@pytest.fixture
def accounts(store):
    add_domain(store, "example.com")
    add_domain(store, "backup.org", backupmx=1)
    add_domain(store, "off.net", active=0)
    add_alias_domain(store, "alias.com", "example.com")
    add_alias_domain(store, "alias-of-off.com", "off.net")
    add_alias_domain(store, "alias-of-backup.com", "backup.org")
    return store.accounts


@pytest.mark.parametrize(
    "domain, include_alias, include_backupmx, expected",
    [
        ("example.com", True, True, True),
        ("example.com", False, False, True),
        ("backup.org", True, True, True),
        ("backup.org", True, False, False),  # backup MX excluded on request
        ("off.net", True, True, False),  # inactive domain
        ("alias.com", True, True, True),  # alias of an active domain
        ("alias.com", False, True, False),  # aliases excluded on request
        ("alias-of-off.com", True, True, False),  # target inactive
        ("alias-of-backup.com", True, False, True),  # iRedAPD: alias lookup ignores backupmx
        ("unknown.com", True, True, False),
        ("not a domain", True, True, False),
        ("", True, True, False),
    ],
)
def test_is_local_domain(accounts, domain, include_alias, include_backupmx, expected):
    assert accounts.is_local_domain(domain, include_alias, include_backupmx) is expected


@pytest.mark.parametrize(
    "domain, expected",
    [
        ("alias.com", "example.com"),
        ("ALIAS.com", "example.com"),  # lowercased before the lookup
        ("alias-of-off.com", None),
        ("example.com", None),
        ("unknown.com", None),
        ("x'or'1'='1", None),
    ],
)
def test_alias_target(accounts, domain, expected):
    assert accounts.alias_target(domain) == expected


def test_alias_targets_answer_each_domain_as_alias_target_does_in_one_statement(accounts, store):
    domains = [
        "alias.com",
        "ALIAS.com",
        "alias-of-off.com",
        "example.com",
        "unknown.com",
        "x'or'1'='1",
        "",
        "alias.com",
    ]
    statements = count_statements(store.vmail)
    found = accounts.alias_targets(domains)
    assert statements() == 1
    assert found == {d.lower(): accounts.alias_target(d) for d in domains}
    assert found["alias.com"] == "example.com" and found["alias-of-off.com"] is None


def count_statements(db):
    """Wrap ``db`` so that every statement it runs is counted; returns the counter."""
    calls = []
    run = db._run

    def counted(*args, **kwargs):
        calls.append(args[0])
        return run(*args, **kwargs)

    db._run = counted
    return lambda: len(calls)


def test_request_context_fetches_the_request_domains_in_one_round_trip(accounts, store):
    from apd.context import RequestContext
    from apd.netmatch import TrustedClients
    from apd.protocol import PolicyRequest

    request = PolicyRequest.build({"sender": "a@alias.com", "recipient": "b@Example.COM", "sasl_username": ""})
    ctx = RequestContext(request, store, TrustedClients(()), 0.0)
    statements = count_statements(store.vmail)
    assert ctx.alias_target("example.com") is None
    assert ctx.alias_target("alias.com") == "example.com"  # fetched with the first ask
    assert ctx.alias_target("ALIAS.COM") == "example.com"
    assert statements() == 1
    assert ctx.alias_target("alias-of-off.com") is None  # not a request domain: one more statement
    assert statements() == 2


def test_case_of_stored_domain_follows_the_dialect(store):
    """MySQL compares case-insensitively (utf8mb4_general_ci), the others do not."""
    add_domain(store, "MixedCase.org")
    found = store.accounts.is_local_domain("mixedcase.org")
    assert found is store.vmail.dialect.case_insensitive_text


def session_attrs(**changes) -> dict:
    attrs = {
        "instance": "abc.123",
        "client_address": "192.0.2.1",
        "client_name": "mail.example.net",
        "reverse_client_name": "mail.example.net",
        "helo_name": "mail.example.net",
        "sender": "a@example.net",
        "sender_domain": "example.net",
        "recipient": "b@example.com",
        "recipient_domain": "example.com",
        "server_address": "192.0.2.25",
        "server_port": "25",
    }
    attrs.update(changes)
    return attrs


def stored_sessions(store) -> list[dict]:
    rows = store.iredapd.query(f"SELECT {', '.join(COLUMNS)} FROM smtp_sessions ORDER BY id")
    return [dict(zip(COLUMNS, row)) for row in rows]


def test_session_log_insert(store):
    now = time.time()
    store.sessions.record(session_row(session_attrs(), "REJECT Blacklisted", now))
    (row,) = stored_sessions(store)
    assert row["action"] == "REJECT"
    assert row["reason"] == "Blacklisted"
    assert row["sender"] == "a@example.net"
    assert int(row["time_num"]) == int(now)
    assert str(row["time"]).startswith(time.strftime("%Y-%m-%d", time.gmtime(now)))


HOSTILE = [
    "a'or'1'='1@x.org",
    "x\\'; DROP TABLE greylisting; --@y.com",
    'q"uote@z.org',
    "back\\slash@z.org",
    "%s@percent.org",
    "*)(uid=*",
]


@pytest.mark.parametrize("sender", HOSTILE)
def test_hostile_values_are_stored_literally(store, sender):
    store.sessions.record(session_row(session_attrs(sender=sender, helo_name="x :y"), "REJECT x", time.time()))
    (row,) = stored_sessions(store)
    assert row["sender"] == sender
    assert row["helo_name"] == "x :y"
    # the statement really ran against the live schema: greylisting still exists
    assert store.iredapd.query("SELECT COUNT(*) FROM greylisting") == [(0,)]
    count = store.iredapd.query("SELECT COUNT(*) FROM smtp_sessions WHERE sender = %s", (sender,))
    assert count == [(1,)]


@pytest.mark.parametrize("domain", ["x.org' OR '1'='1", "x.org\\'; DROP TABLE domain; --", "%", "_.org"])
def test_hostile_domains_match_nothing(accounts, store, domain):
    assert accounts.is_local_domain(domain) is False
    assert accounts.alias_target(domain) is None
    assert store.vmail.query("SELECT COUNT(*) FROM domain") == [(3,)]


def test_duplicate_key_raises_duplicatekey(store):
    sql = "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES (%s, %s, %s)"
    store.iredapd.execute(sql, ("@.", "192.0.2.1", "first"))
    with pytest.raises(DuplicateKey):
        store.iredapd.execute(sql, ("@.", "192.0.2.1", "second"))
    # the connection stays usable after the error
    assert store.iredapd.query("SELECT comment FROM greylisting_whitelists") == [("first",)]


def test_insert_ignore_and_upsert_helpers(store):
    db = store.iredapd
    dialect = db.dialect
    ignore = dialect.insert_ignore("greylisting_whitelists", ("account", "sender", "comment"), ("account", "sender"))
    db.execute(ignore, ("@.", "192.0.2.2", "one"))
    db.execute(ignore, ("@.", "192.0.2.2", "two"))
    assert db.query("SELECT comment FROM greylisting_whitelists") == [("one",)]
    upsert = dialect.upsert(
        "greylisting_whitelists",
        ("account", "sender", "comment"),
        ("account", "sender"),
        "comment = excluded.comment",
    )
    db.execute(upsert, ("@.", "192.0.2.2", "three"))
    db.execute(upsert, ("@.", "192.0.2.3", "four"))
    assert sorted(db.query("SELECT sender, comment FROM greylisting_whitelists")) == [
        ("192.0.2.2", "three"),
        ("192.0.2.3", "four"),
    ]


def test_transaction_rolls_back_on_error(store):
    db = store.iredapd
    sql = "INSERT INTO srs_exclude_domains (domain) VALUES (%s)"
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.execute(sql, ("one.org",))
            raise RuntimeError("boom")
    with pytest.raises(DuplicateKey):
        with db.transaction():
            db.execute(sql, ("two.org",))
            db.execute(sql, ("two.org",))
    assert db.query("SELECT domain FROM srs_exclude_domains") == []
    with db.transaction():
        db.execute(sql, ("three.org",))
    assert db.query("SELECT domain FROM srs_exclude_domains") == [("three.org",)]


def test_sql_error_is_a_storeerror_not_an_outage(store):
    with pytest.raises(StoreError) as info:
        store.iredapd.query("SELECT no_such_column FROM smtp_sessions")
    assert type(info.value) is StoreError
    assert store.iredapd.available
    assert store.iredapd.query("SELECT 1") == [(1,)]


def test_sql_backend_fixture_gives_empty_tables_and_settings(sql_backend):
    assert sql_backend.settings.backend == sql_backend.backend
    for db, table in ((sql_backend.vmail, "domain"), (sql_backend.amavisd, "users"), (sql_backend.iredapd, "throttle")):
        assert db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)]
    sql_backend.iredapd.execute("INSERT INTO srs_exclude_domains (domain) VALUES (%s)", ("left.over",))

"""The amavisd_wblist check on the embedded SQLite store (real database, in process)."""

from __future__ import annotations

import pytest

from tests.helpers.wblist import ask, sqlite_store, wblist_check

REJECT, DISCARD, OK = "REJECT Blacklisted", "DISCARD Policy discard", "OK"


@pytest.fixture
def env(tmp_path):
    settings, store = sqlite_store(tmp_path / "apd.sqlite3")
    yield settings, store
    store.close()


@pytest.fixture
def check(env):
    settings, store = env
    return wblist_check(settings, store)


def statements(store):
    """Record the list statements the check sends (sqlite3's trace hook on the real connection)."""
    seen: list[str] = []
    store.amavisd._connection().set_trace_callback(seen.append)
    return seen


def list_statements(seen):
    return [s for s in seen if "mailaddr" in s or "wblist" in s]


def test_ipv4_network_blacklist(env, check):
    _, store = env
    store.wblist.add("@.", ["198.51.100.0/24"], "B", False)
    assert ask(check, store, client_address="198.51.100.7") == REJECT
    assert ask(check, store, client_address="198.51.101.7") is None


def test_ipv6_address_and_network(env, check):
    _, store = env
    store.wblist.add("@.", ["2001:db8:1::/48", "2001:db8:2::25"], "B", False)
    assert ask(check, store, client_address="2001:db8:1:ffff::1") == REJECT
    assert ask(check, store, client_address="2001:db8:2::25") == REJECT
    assert ask(check, store, client_address="2001:db8:3::1") is None


def test_ipv6_entry_in_another_textual_form_matches_through_the_tree(env, check):
    _, store = env
    store.amavisd.execute("INSERT INTO mailaddr (email, priority) VALUES (%s, 9)", (b"2001:db8:0:0::25",))
    store.wblist.add("@.", ["2001:db8:0:0::25"], "B", False)
    assert ask(check, store, client_address="2001:db8::25") == REJECT


def test_host_bits_and_wildcards_are_not_networks(env, check):
    _, store = env
    store.amavisd.execute("INSERT INTO mailaddr (email, priority) VALUES (%s, 7)", (b"198.51.100.7/24",))
    store.wblist.add("@.", ["198.51.100.7/24"], "B", False)
    assert ask(check, store, client_address="198.51.100.8") is None


def test_user_whitelist_beats_global_blacklist(env, check):
    _, store = env
    store.wblist.add("@.", ["198.51.100.0/24", "@x.com"], "B", False)
    store.wblist.add("user@local.com", ["friend@x.com"], "W", False)
    assert ask(check, store) == OK
    assert ask(check, store, recipient="other@local.com") == REJECT


def test_spec_example_user_blacklist_of_catchall_beats_domain_whitelist(env, check):
    _, store = env
    store.wblist.add("@local.com", ["friend@x.com"], "W", False)
    store.wblist.add("user@local.com", ["@."], "B", False)
    assert ask(check, store) == REJECT
    assert ask(check, store, recipient="other@local.com") == OK


def test_wildcard_ip_entries(env, check):
    settings, store = env
    store.wblist.add("@.", ["198.51.100.*"], "B", False)
    store.wblist.add("@.", ["203.0.*.*"], "B", False)
    assert ask(check, store, client_address="198.51.100.200") == REJECT
    assert ask(check, store, client_address="203.0.113.5") is None
    every_form = wblist_check(settings, store, ENABLE_ALL_WILDCARD_IP=True)
    assert ask(every_form, store, client_address="203.0.113.5") == REJECT


def test_wildcard_address_user_at_star(env, check):
    _, store = env
    store.wblist.add("@.", ["friend@*"], "B", False)
    assert ask(check, store, sender="friend+news@y.org") == REJECT
    assert ask(check, store, sender="enemy@y.org") is None


def test_subdomain_and_tld_entries(env, check):
    _, store = env
    store.wblist.add("@.", ["@.x.com"], "B", False)
    assert ask(check, store, sender="a@deep.sub.x.com") == REJECT
    assert ask(check, store, sender="a@notx.com") is None


def test_alias_domains_on_both_sides(env, check):
    _, store = env
    db = store.vmail
    db.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES (%s, %s)", ("alias.com", "local.com"))
    store.wblist.add("user@local.com", ["@x.com"], "B", False)
    assert ask(check, store, recipient="user@alias.com") == REJECT
    db.execute("INSERT INTO domain (domain) VALUES (%s)", ("partner.org",))
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES (%s, %s)", ("partner.net", "partner.org"))
    store.wblist.add("user@local.com", ["boss@partner.org"], "W", False)
    assert ask(check, store, sender="boss@partner.net", recipient="user@alias.com") == OK


def test_null_sender_and_self_mail_are_never_checked(env, check):
    _, store = env
    store.wblist.add("@.", ["198.51.100.7", "@."], "B", False)
    assert ask(check, store, sender="") is None
    assert ask(check, store, sender="user@local.com") is None
    assert ask(check, store) == REJECT


def test_discard_instead_of_reject(env):
    settings, store = env
    store.wblist.add("@.", ["@x.com"], "B", False)
    assert ask(wblist_check(settings, store, WBLIST_DISCARD_INSTEAD_OF_REJECT=True), store) == DISCARD


def test_outbound_lists(env):
    settings, store = env
    check = wblist_check(settings, store)
    out = {"sasl_username": "me@local.com", "sender": "me@local.com", "recipient": "bad@ext.com"}
    store.wblist.add("me@local.com", ["@ext.com"], "B", True)
    assert ask(check, store, **out) == REJECT
    store.wblist.add("me@local.com", ["bad@ext.com"], "W", True)
    rows = store.amavisd.query("SELECT rid, sid FROM outbound_wblist WHERE wb = %s", ("W",))
    rid, sid = rows[0]
    assert ask(check, store, **out) == f"DUNNO outbound_wblist=({rid}, {sid}, 'W')"
    bypass = wblist_check(settings, store, WBLIST_BYPASS_OUTGOING_EMAIL=True)
    store.wblist.add("me@local.com", ["bad@ext.com"], "B", True)
    assert ask(check, store, **out) == REJECT
    assert ask(bypass, store, **out) is None


def test_authenticated_mail_to_external_domain_skips_inbound(env, check):
    _, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    store.vmail.execute("INSERT INTO domain (domain, backupmx) VALUES (%s, 1)", ("backup.org",))
    store.wblist.add("@.", ["me@local.com"], "B", False)
    auth = {"sasl_username": "me@local.com", "sender": "me@local.com"}
    assert ask(check, store, recipient="x@ext.com", **auth) is None
    assert ask(check, store, recipient="x@local.com", **auth) == REJECT
    assert ask(check, store, recipient="x@backup.org", **auth) == REJECT


def test_plain_sql_text_rows_match_on_sqlite(env, check):
    """Rows written by hand in SQLite are TEXT, apd's are BLOB: both must match."""
    _, store = env
    db = store.amavisd
    db.execute("INSERT INTO users (email, priority, policy_id) VALUES (%s, 0, 0)", ("@.",))
    db.execute("INSERT INTO mailaddr (email, priority) VALUES (%s, 5)", ("@x.com",))
    db.execute("INSERT INTO mailaddr (email, priority) VALUES (%s, 7)", ("203.0.113.0/24",))
    db.execute("INSERT INTO wblist (rid, sid, wb) SELECT u.id, m.id, 'B' FROM users u, mailaddr m")
    assert ask(check, store) == REJECT
    assert ask(check, store, sender="a@y.com", client_address="203.0.113.9") == REJECT
    assert store.wblist.entries("@.", "B", False) == ["203.0.113.0/24", "@x.com"]
    store.wblist.delete("@.", ["@x.com", "203.0.113.0/24"], "B", False)
    assert ask(check, store, sender="a@y.com", client_address="203.0.113.9") is None


def test_next_request_sees_add_delete_and_delete_all(env, check):
    _, store = env
    assert ask(check, store) is None
    store.wblist.add("@.", ["198.51.100.0/24"], "B", False)
    assert ask(check, store) == REJECT
    store.wblist.delete("@.", ["198.51.100.0/24"], "B", False)
    assert ask(check, store) is None
    store.wblist.add("@.", ["198.51.0.0/16", "2001:db8::/32"], "B", False)
    assert ask(check, store) == REJECT
    store.wblist.delete_all("@.", "B", False)
    assert ask(check, store) is None
    assert ask(check, store, client_address="2001:db8::1") is None


def test_network_row_edited_or_deleted_by_hand(env, check):
    _, store = env
    store.wblist.add("@.", ["198.51.100.0/24"], "B", False)
    assert ask(check, store) == REJECT
    # UPDATE keeps count and max id: the join returns the new email, verify() rejects the id
    store.amavisd.execute("UPDATE mailaddr SET email = %s WHERE email = %s", ("10.0.0.0/8", "198.51.100.0/24"))
    assert ask(check, store) is None
    assert ask(check, store, client_address="10.1.2.3") == REJECT
    store.amavisd.execute("DELETE FROM mailaddr")
    assert ask(check, store, client_address="10.1.2.3") is None


def test_one_statement_per_request(env, check):
    _, store = env
    store.wblist.add("@.", ["198.51.100.0/24"], "B", False)
    store.wblist.add("user@local.com", ["friend@x.com"], "W", False)
    ask(check, store)  # first request loads the tree
    seen = statements(store)
    for _ in range(3):
        assert ask(check, store) == OK
        assert ask(check, store, sender="a@b.org") == REJECT
    assert len(list_statements(seen)) == 6
    seen.clear()
    store.wblist.add("@.", ["192.0.2.1"], "B", False)
    seen.clear()
    assert ask(check, store, sender="a@b.org") == REJECT
    # lookup + the rows above the mark; the client's networks did not change: no re-run
    assert len(list_statements(seen)) == 2
    seen.clear()
    assert ask(check, store, sender="a@b.org") == REJECT
    assert len(list_statements(seen)) == 1


def test_outbound_and_inbound_in_one_statement(env, check):
    _, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    store.wblist.add("me@local.com", ["x@local.com"], "W", True)
    store.wblist.add("x@local.com", ["me@local.com"], "B", False)
    ask(check, store, sasl_username="me@local.com", sender="me@local.com", recipient="x@local.com")
    seen = statements(store)
    assert ask(check, store, sasl_username="me@local.com", sender="me@local.com", recipient="x@local.com") == REJECT
    assert len(list_statements(seen)) == 1


def test_sqlite_plan_probes_list_rows_by_pair(env, check):
    """With statistics that make an account's list look small, SQLite would walk it row by row
    (cost growing with the list); the statement pins the plan to one probe per pair."""
    _, store = env
    store.wblist.add("@.", [f"10.0.{i}.0/24" for i in range(60)] + [f"u{i}@x.com" for i in range(60)], "B", False)
    for i in range(40):  # many small accounts: the average list looks short to the planner
        store.wblist.add(f"user{i}@local.com", [f"v{i}@x.com"], "W", False)
    store.amavisd.execute("ANALYZE")
    seen = statements(store)
    ask(check, store, client_address="10.0.5.1")
    lookup = [s for s in seen if "wblist" in s][-1]
    plan = [row[3] for row in store.amavisd.query("EXPLAIN QUERY PLAN " + lookup)]
    probes = [step for step in plan if step.startswith("SEARCH w ")]
    assert len(probes) == 2 and all("rid=? AND sid=?" in step for step in probes), plan


# --- identities, early exits and WBLIST_BYPASS_OUTGOING_EMAIL (steps 2-4, 6.4, 7)

IDENTITY_CASES = [
    # (request attributes, expected) with '@.' blacklisting 'me@local.com' and 'friend@x.com' inbound
    ({"sender": "friend@x.com"}, REJECT),
    # authenticated: s is the login, so s == r exits even though the envelope sender differs
    ({"sasl_username": "user@local.com", "sender": "friend@x.com"}, None),
    # authenticated null sender: s is the login, so it is checked (only an empty s exits)
    ({"sasl_username": "me@local.com", "sender": ""}, REJECT),
    # unauthenticated null sender: never checked, not even against the client IP list
    ({"sender": "", "client_address": "203.0.113.9"}, None),
    # the envelope sender equals the recipient, but the login does not: checked
    ({"sasl_username": "me@local.com", "sender": "user@local.com"}, REJECT),
]


@pytest.mark.parametrize("attrs,expected", IDENTITY_CASES)
def test_identities_and_early_exits(env, check, attrs, expected):
    _, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    store.wblist.add("@.", ["me@local.com", "friend@x.com", "203.0.113.9"], "B", False)
    assert ask(check, store, **attrs) == expected


def test_bypass_outgoing_skips_only_the_outbound_lists(env):
    settings, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    bypass = wblist_check(settings, store, WBLIST_BYPASS_OUTGOING_EMAIL=True)
    auth = {"sasl_username": "me@local.com", "sender": "me@local.com"}
    store.wblist.add("me@local.com", ["@ext.com", "@local.com"], "B", True)
    assert ask(bypass, store, recipient="x@ext.com", **auth) is None
    # mail between local users still gets the recipient's inbound lists
    store.wblist.add("x@local.com", ["me@local.com"], "B", False)
    assert ask(bypass, store, recipient="x@local.com", **auth) == REJECT
    store.wblist.add("x@local.com", ["me@local.com"], "W", False)
    assert ask(bypass, store, recipient="x@local.com", **auth) == OK


def test_outbound_whitelist_then_inbound_decides(env, check):
    _, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    auth = {"sasl_username": "me@local.com", "sender": "me@local.com", "recipient": "x@local.com"}
    store.wblist.add("me@local.com", ["x@local.com"], "W", True)
    assert ask(check, store, **auth).startswith("DUNNO outbound_wblist=(")
    store.wblist.add("x@local.com", ["@local.com"], "B", False)
    assert ask(check, store, **auth) == REJECT


def test_outbound_blacklist_beats_an_inbound_whitelist(env, check):
    _, store = env
    store.vmail.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    auth = {"sasl_username": "me@local.com", "sender": "me@local.com", "recipient": "x@local.com"}
    store.wblist.add("x@local.com", ["me@local.com"], "W", False)
    assert ask(check, store, **auth) == OK
    store.wblist.add("@local.com", ["x@local.com"], "B", True)
    assert ask(check, store, **auth) == REJECT


WB_VALUES = [("W", OK), ("B", REJECT), ("w", None), ("b", None), ("Y", None), ("N", None), (" ", None), ("W ", None)]


@pytest.mark.parametrize("wb,expected", WB_VALUES)
def test_only_exact_w_and_b_are_entries(env, check, wb, expected):
    """Rows written by hand (iRedAdmin, Amavisd's own values): only exact 'W' and 'B' count."""
    _, store = env
    store.wblist.add("user@local.com", ["friend@x.com"], "W", False)
    store.amavisd.execute("UPDATE wblist SET wb = %s", (wb,))
    assert ask(check, store) == expected


def test_ipv6_client_gets_no_wildcard_forms_and_keeps_user_at_star(env, check):
    _, store = env
    store.wblist.add("@.", ["friend@*"], "B", False)
    assert ask(check, store, client_address="2001:db8::7") == REJECT
    store.wblist.delete_all("@.", "B", False)
    store.wblist.add("@.", ["2001:db8::/32"], "W", False)
    store.wblist.add("user@local.com", ["@x.com"], "B", False)
    # the recipient's own list decides before the global network whitelist
    assert ask(check, store, client_address="2001:db8::7") == REJECT
    assert ask(check, store, client_address="2001:db8::7", recipient="other@local.com") == OK


def test_login_in_an_alias_domain_uses_the_target_domain_lists(env, check):
    _, store = env
    db = store.vmail
    db.execute("INSERT INTO domain (domain) VALUES (%s)", ("local.com",))
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES (%s, %s)", ("alias.com", "local.com"))
    store.wblist.add("me@local.com", ["@ext.com"], "B", True)
    auth = {"sasl_username": "me@alias.com", "sender": "boss@elsewhere.org", "recipient": "x@ext.com"}
    assert ask(check, store, **auth) == REJECT
    assert ask(check, store, **{**auth, "sasl_username": "me@other.com"}) is None


def test_networks_wider_than_the_first_octet_match(env, check):
    """iRedAPD only reads networks whose text starts with the client's first octet, so 8.0.0.0/6
    never matched 10.1.2.3; apd matches every network that contains the client (README)."""
    _, store = env
    store.wblist.add("@.", ["8.0.0.0/6", "2001:db8::/32"], "B", False)
    assert ask(check, store, client_address="10.1.2.3") == REJECT
    assert ask(check, store, client_address="12.1.2.3") is None


def test_no_amavisd_database_logs_an_error_and_answers_dunno(env, caplog):
    """Step 1: without an amavisd database the check logs an error and has no opinion."""
    from apd.store import Store

    settings, store = env
    bare = Store(store.vmail, None, store.iredapd, store.accounts)
    check = wblist_check(settings, bare)
    with caplog.at_level("ERROR", logger="apd.checks.amavisd_wblist"):
        assert ask(check, bare) is None
    assert any("no amavisd database" in r.getMessage() for r in caplog.records)


ACCOUNT_FORMS = [
    # (account owning the blacklist of @x.com, recipient, expected)
    ("user@local.com", "user@local.com", REJECT),
    ("user@local.com", "user+tag@local.com", REJECT),  # R is the recipient without extension
    ("user@local.com", "other@local.com", None),
    ("@local.com", "other@local.com", REJECT),
    ("@local.com", "other@sub.local.com", None),
    ("@.local.com", "other@sub.local.com", REJECT),
    ("@.local.com", "other@local.com", REJECT),
    ("@.com", "other@elsewhere.com", REJECT),
    ("@.", "anyone@anywhere.org", REJECT),
]


@pytest.mark.parametrize("account,recipient,expected", ACCOUNT_FORMS)
def test_recipient_account_forms(env, check, account, recipient, expected):
    _, store = env
    store.wblist.add(account, ["@x.com"], "B", False)
    assert ask(check, store, recipient=recipient) == expected

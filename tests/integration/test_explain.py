"""apd explain against real stores: golden output of each check's deciding path (SQLite, and
MariaDB with iRedMail's schemas), no side effect in any table, a down database, the command line.

Regenerate the golden files after an intended change of the output with APD_UPDATE_GOLDEN=1
(then read the diff: it is what an administrator will see)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apd import checks as check_registry
from apd.explain.render import as_text
from apd.explain.runner import explain
from apd.policy import Policy
from apd.protocol import PolicyRequest
from apd.settings import DEFAULT_PLUGINS
from tests.helpers.apd_process import ROOT, settings_text
from tests.helpers.policy_client import rcpt
from tests.integration.greylisting_backends import open_backend

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "explain"
NOW = 1_764_806_400  # fixed: the golden files hold times derived from it
USER = "user@example.com"
# iRedMail's list and five more (an LDAP one: skipped on SQL, as the output says)
PLUGINS = [
    *DEFAULT_PLUGINS,
    "reject_to_hostname",
    "sql_ml_access_policy",
    "sql_force_change_password",
    "ldap_maillist_access_policy",
    "whitelist_outbound_recipient",
]
HOSTNAME = "mx.example.com"  # reject_to_hostname's socket.gethostname(), set by the golden test
ACCOUNTS = [
    ("vmail", "INSERT INTO domain (domain, active) VALUES ('example.com', 1)"),
    (
        "vmail",
        f"INSERT INTO mailbox (username, password, domain, active, passwordlastchange) VALUES ('{USER}', '', 'example.com', 1, '2026-11-30 00:00:00')",
    ),
]
END_OF_MESSAGE = dict(
    sender=USER,
    sasl_username=USER,
    sasl_method="PLAIN",
    recipient="friend@example.org",
    client_address="198.51.100.7",
    protocol_state="END-OF-MESSAGE",
    recipient_count="1",
    size="1000",
)
GREYLISTING_ON = (
    "iredapd",
    "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)",
)


def throttle_rule(tracked: tuple[int, int] | None = None, **limits: int) -> list[tuple[str, str]]:
    """An outbound rule id=7 for USER (limits -1 unless given), and its counter (cur_msgs, cur_quota)."""
    values = {rule: limits.get(rule, -1) for rule in ("msg_size", "max_msgs", "max_quota", "max_rcpts")}
    rows = [
        (
            "iredapd",
            "INSERT INTO throttle (id, account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts)"
            f" VALUES (7, '{USER}', 'outbound', 100, 3600, {', '.join(map(str, values.values()))})",
        )
    ]
    if tracked:
        rows.append(
            (
                "iredapd",
                "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time)"
                f" VALUES (7, '{USER}', 3600, {tracked[0]}, {tracked[1]}, {NOW - 600}, {NOW - 600})",
            )
        )
    return rows


OUTBOUND = dict(
    sender=USER, sasl_username=USER, sasl_method="PLAIN", recipient="friend@example.org", client_address="198.51.100.7"
)

# case: (rows to add, request, the check expected to decide)
CASES = {
    "reject_null_sender": ([], rcpt(sender="", sasl_username=USER), "reject_null_sender"),
    "wblist_rdns": (
        [("iredapd", "INSERT INTO wblist_rdns (rdns, wb) VALUES ('.example.net', 'B')")],
        rcpt(recipient=USER),
        "wblist_rdns",
    ),
    "reject_sender_login_mismatch": (
        [],
        rcpt(**dict(OUTBOUND, sender="other@example.com")),
        "reject_sender_login_mismatch",
    ),
    "greylisting": ([GREYLISTING_ON], rcpt(recipient=USER), "greylisting"),
    "throttle": (
        [
            (
                "iredapd",
                f"INSERT INTO throttle (id, account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts) VALUES (7, '{USER}', 'outbound', 100, 3600, -1, 2, -1, -1)",
            ),
            (
                "iredapd",
                f"INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time) VALUES (7, '{USER}', 3600, 2, 2000, {NOW - 600}, {NOW - 600})",
            ),
        ],
        rcpt(**dict(OUTBOUND, protocol_state="END-OF-MESSAGE", recipient_count="1", size="1000")),
        "throttle",
    ),
    "amavisd_wblist": (
        [
            ("amavisd", f"INSERT INTO users (id, priority, email) VALUES (1, 10, '{USER}')"),
            ("amavisd", "INSERT INTO mailaddr (id, priority, email) VALUES (1, 10, 'bad@spam.example')"),
            ("amavisd", "INSERT INTO wblist (rid, sid, wb) VALUES (1, 1, 'B')"),
        ],
        rcpt(sender="bad@spam.example", recipient=USER),
        "amavisd_wblist",
    ),
    "sql_alias_access_policy": (
        [
            (
                "vmail",
                "INSERT INTO alias (address, accesspolicy, domain, active) VALUES ('staff@example.com', 'domain', 'example.com', 1)",
            )
        ],
        rcpt(recipient="staff@example.com"),
        "sql_alias_access_policy",
    ),
    "sql_ml_access_policy": (
        [
            (
                "vmail",
                "INSERT INTO maillists (address, domain, accesspolicy, active) VALUES ('team@example.com', 'example.com', 'domain', 1)",
            )
        ],
        rcpt(recipient="team@example.com"),
        "sql_ml_access_policy",
    ),
    "sql_force_change_password": (
        [("vmail", f"UPDATE mailbox SET passwordlastchange = '2020-01-01 00:00:00' WHERE username = '{USER}'")],
        rcpt(**OUTBOUND),
        "sql_force_change_password",
    ),
    "greylisting-retry_too_soon": (
        [
            GREYLISTING_ON,
            (
                "iredapd",
                "INSERT INTO greylisting_tracking (sender, recipient, client_address, sender_domain, rcpt_domain,"
                " init_time, block_expired, record_expired, blocked_count, passed) VALUES ('someone@example.net',"
                f" '{USER}', '192.0.2.10', 'example.net', 'example.com', {NOW - 60}, {NOW + 840}, {NOW + 86340}, 1, 0)",
            ),
        ],
        rcpt(recipient=USER),
        "greylisting",
    ),
    "throttle-msg_size": (throttle_rule(msg_size=500), rcpt(**dict(END_OF_MESSAGE, size="1000")), "throttle"),
    "throttle-max_rcpts": (throttle_rule(max_rcpts=2), rcpt(**dict(END_OF_MESSAGE, recipient_count="3")), "throttle"),
    "throttle-max_quota": (throttle_rule((5, 2000), max_quota=1500), rcpt(**END_OF_MESSAGE), "throttle"),
    "amavisd_wblist-whitelist": (
        [
            ("amavisd", f"INSERT INTO users (id, priority, email) VALUES (1, 10, '{USER}')"),
            ("amavisd", "INSERT INTO mailaddr (id, priority, email) VALUES (1, 10, 'friend@partner.example')"),
            ("amavisd", "INSERT INTO wblist (rid, sid, wb) VALUES (1, 1, 'W')"),
        ],
        rcpt(sender="friend@partner.example", recipient=USER),
        "amavisd_wblist",
    ),
    "reject_to_hostname": ([], rcpt(recipient=f"postmaster@{HOSTNAME}"), "reject_to_hostname"),
    # no check decides: the outbound recipient would be whitelisted for greylisting
    "whitelist_outbound_recipient": ([], rcpt(**dict(END_OF_MESSAGE, size="10")), ""),
}
MARIADB_CASES = (
    "greylisting",
    "greylisting-retry_too_soon",
    "throttle",
    "throttle-max_quota",
    "amavisd_wblist",
    "amavisd_wblist-whitelist",
    "sql_ml_access_policy",
    "sql_alias_access_policy",
    "sql_force_change_password",
    "reject_sender_login_mismatch",
)


SQL_KINDS = [
    "sqlite",
    pytest.param("mysql:iredmail", marks=pytest.mark.servers),
    pytest.param("pgsql:iredmail", marks=pytest.mark.servers),
]


def prepared(request, tmp_path, kind: str, rows) -> object:
    backend = open_backend(request, tmp_path, kind)
    for db, sql in ACCOUNTS + list(rows):
        getattr(backend.store, db).execute(sql)
    backend.settings = backend.settings.replace(
        plugins=PLUGINS, NOTIFICATION_RECIPIENTS=[], GREYLISTING_BYPASS_SPF=False, DNS_NAMESERVERS=("127.0.0.1:9",)
    )
    return backend


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("APD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with APD_UPDATE_GOLDEN=1 and read it"
    assert text == path.read_text()


GOLDEN_CASES = [("sqlite", case) for case in sorted(CASES)] + [
    pytest.param("mysql:iredmail", case, marks=pytest.mark.servers) for case in MARIADB_CASES
]


@pytest.mark.parametrize(("kind", "case"), GOLDEN_CASES)
def test_golden(request, tmp_path, monkeypatch, kind, case):
    monkeypatch.setattr(socket, "gethostname", lambda: HOSTNAME)
    rows, attrs, decider = CASES[case]
    backend = prepared(request, tmp_path, kind, rows)
    explanation = explain(backend.settings, backend.store, attrs, NOW)
    assert explanation.decided_by == decider, as_text(explanation)
    golden(f"{'sqlite' if kind == 'sqlite' else 'mariadb'}-{case}", as_text(explanation))
    with_sql = as_text(explanation, sql=True)  # --sql: the statements too (not golden: the store's own business)
    statements = [s for trace in explanation.checks for s in trace.statements]
    assert all(f"sql {s.database}: {s.sql[:40]}" in with_sql for s in statements)
    backend.close()


def every_row(store) -> dict[str, list]:
    found = {}
    for db in store.databases():
        kind = type(db.dialect).__name__
        if "Sqlite" in kind:
            names = [
                r[0]
                for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%%'")
            ]
        elif "Mysql" in kind:
            names = [r[0] for r in db.query("SHOW TABLES")]
        else:
            names = [r[0] for r in db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for name in names:
            found[f"{db.name}.{name}"] = sorted(map(repr, db.query(f"SELECT * FROM {name}")))
    return found


SIDE_EFFECT_REQUESTS = [
    CASES["greylisting"][1],  # first attempt: a tracking row
    rcpt(
        **dict(OUTBOUND, protocol_state="END-OF-MESSAGE", recipient_count="1", size="10")
    ),  # counted; recipient whitelisted
    CASES["throttle"][1],  # over the limit: the notice claim writes last_notify_time
    rcpt(**OUTBOUND),  # at RCPT: the login checks read, nothing else
    rcpt(sender="", recipient=USER, protocol_state="END-OF-MESSAGE"),  # a session row in the daemon
]


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_explain_changes_no_row_where_the_daemon_would(request, tmp_path, kind):
    limit_of_3 = [(db, sql.replace(", 2, -1, -1)", ", 3, -1, -1)")) for db, sql in CASES["throttle"][0]]
    backend = prepared(request, tmp_path, kind, [GREYLISTING_ON, *limit_of_3])
    settings = backend.settings.replace(
        plugins=[*PLUGINS, "whitelist_outbound_recipient"],
        NOTIFICATION_RECIPIENTS=["postmaster@example.com"],
        CMD_SENDMAIL="/bin/true",
    )
    store = backend.store
    before = every_row(store)
    for attrs in SIDE_EFFECT_REQUESTS:
        explain(settings, store, attrs, NOW)
    assert every_row(store) == before
    # the daemon's own path on the same requests writes: the comparison above could fail
    planned, _ = check_registry.plan(settings)
    policy = Policy(check_registry.instantiate(planned, settings, store), settings, store)
    for attrs in SIDE_EFFECT_REQUESTS:
        request_ = PolicyRequest.build(attrs)
        decision = policy.decide(request_, NOW)
        policy.log_session(request_, decision.action, NOW)
    policy.sessions.flush()
    after = every_row(store)
    changed = {table for table in after if after[table] != before[table]}
    assert {"greylisting_tracking", "throttle_tracking", "greylisting_whitelists", "smtp_sessions"} <= {
        table.split(".", 1)[1] for table in changed
    }, changed
    backend.close()


@pytest.mark.servers
@pytest.mark.parametrize(
    ("failure_action", "said"),
    [
        ("451 4.3.0 Temporary failure", "the daemon answers STORE_FAILURE_ACTION"),
        ("DUNNO", "the daemon goes on without this check (STORE_FAILURE_ACTION is DUNNO)"),
    ],
)
def test_a_down_database_is_named_with_the_fail_safe_answer(tmp_path, failure_action, said):
    from tests.helpers.apd_process import free_port

    dead = free_port()
    values = {
        "backend": "mysql",
        "plugins": ["greylisting"],
        "SQL_QUERY_TIMEOUT": 1,
        "STORE_FAILURE_ACTION": failure_action,
        **{f"{db}_db_port": dead for db in ("vmail", "amavisd", "iredapd")},
        **{f"{db}_db_password": "x" for db in ("vmail", "amavisd", "iredapd")},
    }
    settings_file = tmp_path / "settings.py"
    settings_file.write_text(settings_text(values))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "apd",
            "explain",
            "-c",
            str(settings_file),
            "--sender",
            "a@example.net",
            "--recipient",
            USER,
            "--client-address",
            "192.0.2.10",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "greylisting (priority 80): DATABASE DOWN: database vmail" in done.stdout
    assert done.stdout.endswith(f"note: a database is down: {said}\naction: {failure_action}\n"), done.stdout
    assert "Traceback" not in done.stderr


def test_command_line_input_forms_and_errors(tmp_path):
    settings_file = tmp_path / "settings.py"
    settings_file.write_text(
        settings_text(
            {"backend": "sqlite", "sqlite_db_path": str(tmp_path / "a.db"), "plugins": ["reject_null_sender"]}
        )
    )
    subprocess.run(
        [sys.executable, "-m", "apd", "-c", str(settings_file), "--init-db"],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=True,
    )

    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "apd", "explain", "-c", str(settings_file), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=60,
        )

    lines = "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\nsasl_username=u@example.com\nrecipient=x@example.org\n\n"
    by_lines = run(stdin=lines)
    assert by_lines.returncode == 0, by_lines
    assert "decided by: reject_null_sender" in by_lines.stdout
    assert by_lines.stdout.splitlines()[-1].startswith("action: REJECT ")
    as_json = run("--json", "--sender", "a@example.net", "--recipient", "x@example.org")
    parsed = json.loads(as_json.stdout)
    assert parsed["action"] == "DUNNO" and parsed["checks"][0]["name"] == "reject_null_sender"
    bad = run(stdin="not a request\n")
    assert bad.returncode == 2 and "expected name=value" in bad.stderr
    logged = (
        "postfix/smtpd[7]: NOQUEUE: reject: RCPT from mail.example.net[192.0.2.1]: 554 5.7.1 <x@example.org>: "
        "Recipient address rejected: Policy rejection due to null sender; from=<> to=<x@example.org> proto=ESMTP "
        "helo=<mail.example.net>"
    )
    unauthenticated = run("--from-log", logged)
    assert "decided by: (no check" in unauthenticated.stdout, unauthenticated
    assert "not in the log line, taken as empty or 0: sasl_username (give --sasl-username" in unauthenticated.stdout
    completed = run("--from-log", "-", "--sasl-username", "u@example.com", stdin=logged + "\n")
    assert "decided by: reject_null_sender" in completed.stdout, completed
    assert "sasl_username = u@example.com" in completed.stdout and "not in the log line" not in completed.stdout
    bad_log = run("--from-log", "postfix/smtpd[1]: connect from x[192.0.2.1]")
    assert bad_log.returncode == 2 and "not an smtpd line" in bad_log.stderr and "Traceback" not in bad_log.stderr


def test_golden_sqlite_senderscore(request, tmp_path, dns_server):
    """The check whose answer comes from DNS (dnsmasq's senderscore zone); its cache row is not kept."""
    backend = prepared(request, tmp_path, "sqlite", [])
    settings = backend.settings.replace(plugins=[*PLUGINS, "senderscore"], DNS_NAMESERVERS=(dns_server.nameserver,))
    low_score = explain(settings, backend.store, rcpt(client_address="203.0.113.1", recipient=USER), NOW)
    assert low_score.decided_by == "senderscore", as_text(low_score)
    golden("sqlite-senderscore", as_text(low_score))
    assert backend.store.iredapd.query("SELECT * FROM senderscore_cache") == []  # the score was not cached
    backend.close()


TWO_COUNTERS = [
    # max_msgs claimed by the user's row, max_quota by the domain's: two counters for one message
    (
        "iredapd",
        f"INSERT INTO throttle (id, account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts) VALUES (7, '{USER}', 'outbound', 100, 3600, -1, 10, -1, -1)",
    ),
    (
        "iredapd",
        "INSERT INTO throttle (id, account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts) VALUES (8, '@example.com', 'outbound', 90, 3600, -1, -1, 100000, -1)",
    ),
    (
        "iredapd",
        f"INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time) VALUES (7, '{USER}', 3600, 9, 900, {NOW - 600}, {NOW - 600})",
    ),
]


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_two_counters_of_one_message_are_explained_as_the_daemon_counts_them(request, tmp_path, kind):
    """The domain's counter has no row yet: the daemon's first UPDATE of the user's counter is
    undone with the refused pair (a savepoint in explain), so the 10th message passes in both."""
    backend = prepared(request, tmp_path, kind, TWO_COUNTERS)
    attrs = rcpt(**dict(OUTBOUND, protocol_state="END-OF-MESSAGE", recipient_count="1", size="100"))
    explanation = explain(backend.settings, backend.store, attrs, NOW)
    throttle = next(trace for trace in explanation.checks if trace.name == "throttle")
    assert (explanation.action, throttle.result) == ("DUNNO", None), as_text(explanation)
    assert throttle.findings[-1] == (
        f"accepted: the counters would become rule id=7 for {USER}: cur_msgs 10, cur_quota 1000; "
        f"rule id=8 for {USER}: cur_msgs 1, cur_quota 100"
    ), as_text(explanation)
    planned, _ = check_registry.plan(backend.settings)
    policy = Policy(
        check_registry.instantiate(planned, backend.settings, backend.store), backend.settings, backend.store
    )
    assert policy.decide(PolicyRequest.build(attrs), NOW).action == "DUNNO"  # the daemon, for comparison
    backend.close()


PROBE = '''
import sqlite3

from apd.checks.base import Check


class Probe(Check):
    """Writes from another connection, as a live daemon would while explain runs this check."""

    name = "custom_probe"

    def check(self, request, ctx):
        db = sqlite3.connect(self.settings.sqlite_db_path, timeout=0, isolation_level=None)
        try:
            db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES ('probe.example')")
            return "DUNNO another writer was not blocked"
        except sqlite3.OperationalError as exc:
            return f"DUNNO another writer: {exc}"
        finally:
            db.close()
'''


def test_sqlite_is_not_locked_for_other_writers_after_a_check_wrote(request, tmp_path):
    """Greylisting (training mode: it writes, but does not answer) wrote its tracking row; the
    next check runs with the database free for the daemon's writers, not locked until the end."""
    backend = prepared(request, tmp_path, "sqlite", [GREYLISTING_ON])
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "custom_probe.py").write_text(PROBE)
    settings = backend.settings.replace(
        plugins=["greylisting", "custom_probe"],
        CUSTOM_CHECKS_DIR=str(tmp_path / "checks"),
        GREYLISTING_TRAINING_MODE=True,
    )
    explanation = explain(settings, backend.store, rcpt(recipient=USER), NOW)
    greylisting, probe = explanation.checks
    assert any("first attempt" in line for line in greylisting.findings), as_text(explanation)
    assert probe.result == "DUNNO another writer was not blocked", as_text(explanation)
    assert backend.store.iredapd.query("SELECT COUNT(*) FROM greylisting_tracking") == [(0,)]
    backend.close()


LDAP_PLUGINS = ["reject_sender_login_mismatch", "ldap_maillist_access_policy", "ldap_force_change_password"]
LDAP_CASES = {
    # a login whose shadowLastChange (day 19000) is long past
    "ldap_force_change_password": (
        rcpt(sender=USER, sasl_username=USER, sasl_method="PLAIN", recipient="friend@example.org"),
        "ldap_force_change_password",
    ),
    "ldap_maillist_access_policy": (rcpt(sender="outsider@example.net", recipient="team@example.com"), None),
}


@pytest.mark.servers
@pytest.mark.parametrize("case", sorted(LDAP_CASES))
def test_golden_ldap(slapd_server, case):
    """The LDAP checks against slapd with iRedMail's schema: what entry each found and why it decided."""
    from apd.settings import defaults
    from apd.store import Store
    from tests.helpers.servers import require_module

    require_module("ldap")
    from apd.store.ldap import LdapAccounts

    dn = f"mail=team@example.com,ou=Groups,domainName=example.com,{slapd_server.basedn}"
    entry = {"objectClass": ["mailList"], "mail": ["team@example.com"], "accountStatus": ["active"]}
    slapd_server.add(dn, {**entry, "accessPolicy": ["domain"], "enabledService": ["mail"]})
    settings = defaults().replace(backend="ldap", plugins=LDAP_PLUGINS, **slapd_server.settings())
    accounts = LdapAccounts(settings, hostname="mx.apd.test")
    try:
        attrs, decider = LDAP_CASES[case]
        explanation = explain(settings, Store(None, None, None, accounts), attrs, NOW)
        assert explanation.decided_by == (decider or case), as_text(explanation)
        golden(f"ldap-{case}", as_text(explanation))
    finally:
        accounts.close()
        slapd_server.delete(dn)


DUPLICATE = '''
from apd.checks.base import Check
from apd.errors import DuplicateKey


class Duplicate(Check):
    """Loses a duplicate-key race, as a check may against a live daemon, then reads on."""

    name = "custom_duplicate"

    def check(self, request, ctx):
        db = ctx.store.iredapd
        db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", ["dup.example"])
        try:
            db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", ["dup.example"])
        except DuplicateKey:
            pass
        (count,) = db.query_one("SELECT COUNT(*) FROM greylisting_whitelist_domains WHERE domain = %s", ["dup.example"])
        return f"DUNNO {count} row"
'''


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_failed_write_undoes_only_itself_as_in_the_daemon(request, tmp_path, kind):
    """PostgreSQL refuses every statement of a transaction after a failed one: each statement of
    explain's runs in a savepoint of its own, so the check reads on as in the daemon's autocommit."""
    backend = prepared(request, tmp_path, kind, [])
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "custom_duplicate.py").write_text(DUPLICATE)
    settings = backend.settings.replace(plugins=["custom_duplicate"], CUSTOM_CHECKS_DIR=str(tmp_path / "checks"))
    explanation = explain(settings, backend.store, rcpt(recipient=USER), NOW)
    (duplicate,) = explanation.checks
    assert (duplicate.result, duplicate.error) == ("DUNNO 1 row", ""), as_text(explanation)
    assert backend.store.iredapd.query("SELECT domain FROM greylisting_whitelist_domains") == []
    backend.close()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_the_quota_notice_is_claimed_as_the_daemon_would_and_not_kept(request, tmp_path, kind):
    backend = prepared(request, tmp_path, kind, CASES["throttle"][0])
    settings = backend.settings.replace(NOTIFICATION_RECIPIENTS=["postmaster@example.com"], CMD_SENDMAIL="/bin/false")
    attrs = CASES["throttle"][1]
    first = explain(settings, backend.store, attrs, NOW)
    (throttle,) = [trace for trace in first.checks if trace.name == "throttle"]
    assert throttle.notices == [f"a quota notice for {USER} (max_msgs=2) would be sent to postmaster@example.com"], (
        as_text(first)
    )
    notified = "SELECT last_notify_time FROM throttle_tracking"
    assert backend.store.iredapd.query(notified) == [(0,)]  # the claim was undone
    backend.store.iredapd.execute("UPDATE throttle_tracking SET last_notify_time = %s", [NOW - 60])
    again = explain(settings, backend.store, attrs, NOW)
    (throttle,) = [trace for trace in again.checks if trace.name == "throttle"]
    assert throttle.notices == [
        f"no quota notice for {USER} (max_msgs=2): one was sent in this counting window already"
    ]
    assert backend.store.iredapd.query(notified) == [(NOW - 60,)]
    backend.close()


def test_a_missing_driver_is_named_with_what_to_install(tmp_path):
    """backend ldap without python-ldap (hidden here): exit 1 with the advice, no traceback."""
    (tmp_path / "hidden" / "ldap").mkdir(parents=True)
    (tmp_path / "hidden" / "ldap" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    settings_file = tmp_path / "settings.py"
    settings_file.write_text(settings_text({"backend": "ldap", "plugins": ["ldap_force_change_password"]}))
    done = subprocess.run(
        [sys.executable, "-m", "apd", "explain", "-c", str(settings_file), "--sasl-username", USER],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=f"{tmp_path / 'hidden'}:{ROOT}"),
        timeout=60,
    )
    assert done.returncode == 1, done
    assert "needs python-ldap" in done.stderr and "Traceback" not in done.stderr, done.stderr


RECONNECT = '''
from apd.checks.base import Check


class Reconnect(Check):
    """Writes, loses its connection (as to a server restart), and writes again."""

    name = "custom_reconnect"

    def check(self, request, ctx):
        db = ctx.store.iredapd
        db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", ["before.example"])
        db.close()
        db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", ["after.example"])
        return None
'''


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_write_after_a_lost_connection_is_undone_too(request, tmp_path, kind):
    """The store opens a new connection: explain's transaction is begun again on it, so the write
    there is not committed by autocommit."""
    backend = prepared(request, tmp_path, kind, [])
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "custom_reconnect.py").write_text(RECONNECT)
    settings = backend.settings.replace(plugins=["custom_reconnect"], CUSTOM_CHECKS_DIR=str(tmp_path / "checks"))
    explanation = explain(settings, backend.store, rcpt(recipient=USER), NOW)
    assert explanation.checks[0].error == "", as_text(explanation)
    assert backend.store.iredapd.query("SELECT domain FROM greylisting_whitelist_domains") == []
    backend.close()

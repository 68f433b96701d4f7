"""README "Moving from iRedAPD", done as it says: on a MariaDB holding iRedAPD's schema and the
rows iRedAPD left (throttle counters mid-window, greylisting settings and tracking, amavisd
white/blacklists, session rows), iRedAPD's own settings.py (first line included) starts apd,
and every row keeps its meaning; the rows apd adds are the ones iRedAPD writes (schemas.md §1.12,
protocol.md §9.2), so iRedAPD reads them back after a rollback; the hourly cron job's
replacement runs on the same file."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import pwd
import socket
import subprocess
import sys
import time

import pytest

from apd import replies
from apd.settings import DEFAULT_PLUGINS
from tests.helpers.apd_process import ROOT, ApdProcess, free_port
from tests.helpers.policy_client import rcpt
from tests.helpers.sql_server import PASSWORD

pytestmark = pytest.mark.servers

GREY = "451 4.7.1 Intentional policy rejection, please try again later"
USER = "user@example.com"
OTHER = "other@example.com"
# settings.md §2: iRedMail's list for the SQL backends is the sample's plus sql_ml_access_policy
PLUGINS = [*DEFAULT_PLUGINS, "sql_ml_access_policy"]
DAY = 86400

SRS_SECRET = "iRedMail-generated-secret"
SRS_DOMAIN = "mx.example.com"


def srs0_as_iredapd_writes_it(address: str, unix_time: float) -> str:
    """srslib's SRS0 (srs.md §6), computed here independently of apd's codec."""
    local, host = address.split("@")
    day = int(unix_time) // DAY
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    stamp = alphabet[(day >> 5) & 31] + alphabet[day & 31]
    mac = hmac.new(SRS_SECRET.encode(), (stamp + host + local).lower().encode(), hashlib.sha1).digest()
    return f"SRS0={base64.b64encode(mac).decode()[:4]}={stamp}={host}={local}@{SRS_DOMAIN}"


def table_lookup(port: int, key: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"get {key}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk
            reply += chunk
    return reply.decode().rstrip("\n")


def iredapd_settings(server, port: int, nameserver: str, srs_ports: tuple[int, int], workdir) -> str:
    """settings.py as iRedMail's installer leaves it for iRedAPD on MariaDB (settings.md §2 "What
    iRedMail writes": ports as strings, double quotes from its sed edits), with the values a test
    needs: its ports, its account, a pid file of its own, DNS that never leaves the machine."""
    account = pwd.getpwuid(os.getuid()).pw_name
    lines = [
        "from libs.default_settings import *",
        "",
        'listen_address = "127.0.0.1"',
        f'listen_port = "{port}"',
        f'run_as_user = "{account}"',
        f'pid_file = "{workdir / "iredapd.pid"}"',
        'log_level = "info"',
        'backend = "mysql"',
        f"plugins = {PLUGINS!r}",
        f'srs_forward_port = "{srs_ports[0]}"',
        f'srs_reverse_port = "{srs_ports[1]}"',
        f'srs_domain = "{SRS_DOMAIN}"',
        f'srs_secrets = ["{SRS_SECRET}"]',
        f'mlmmjadmin_api_endpoint = "http://127.0.0.1:{free_port()}/api"',
        'mlmmjadmin_api_auth_token = "iRedMail-generated-token"',
    ]
    for db in ("vmail", "amavisd", "iredapd"):
        lines += [
            f'{db}_db_server = "127.0.0.1"',
            f'{db}_db_port = "{server.port}"',
            f'{db}_db_name = "{server.db_name("iredmail", db)}"',
            f'{db}_db_user = "{db}"',
            f'{db}_db_password = "{PASSWORD}"',
        ]
    lines += ["SQL_DB_DRIVER = 'pymysql'", f"DNS_NAMESERVERS = ['{nameserver}']", ""]
    return "\n".join(lines)


TRACKING = (
    "INSERT INTO greylisting_tracking (sender, recipient, client_address, sender_domain, rcpt_domain,"
    " init_time, block_expired, record_expired, blocked_count, passed) VALUES (%s, %s, %s, %s, 'example.com',"
    " %s, %s, %s, %s, %s)"
)
THROTTLE = (
    "INSERT INTO throttle (account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts)"
    " VALUES (%s, 'outbound', 100, 3600, -1, %s, -1, -1)"
)
COUNTER = (
    "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time)"
    " VALUES (%s, %s, 3600, %s, %s, %s, %s)"
)
SESSION = (
    "INSERT INTO smtp_sessions (time, time_num, action, reason, instance, client_address, sender, recipient,"
    " recipient_domain) VALUES (%s, %s, 'DUNNO', '', %s, '192.0.2.1', 'a@b.example', %s, 'example.com')"
)


def utc_text(unix_time: int) -> str:
    return datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fill_as_iredapd_left_it(server, now: int) -> None:
    vmail, amavisd, iredapd = (server.db_name("iredmail", db) for db in ("vmail", "amavisd", "iredapd"))
    server.execute(
        "INSERT INTO domain (domain, transport, active) VALUES ('example.com', 'dovecot', 1)", database=vmail
    )
    for user in (USER, OTHER):
        server.execute(
            "INSERT INTO mailbox (username, password, domain, maildir, active) VALUES (%s, '', 'example.com', 'm', 1)",
            (user,),
            database=vmail,
        )
    # amavisd white/blacklists of the user
    server.execute("INSERT INTO users (id, priority, email) VALUES (1, 10, %s)", (USER,), database=amavisd)
    server.execute(
        "INSERT INTO mailaddr (id, priority, email) VALUES (1, 10, 'bad@spam.example'), (2, 10, 'good@friend.example')",
        database=amavisd,
    )
    server.execute("INSERT INTO wblist (rid, sid, wb) VALUES (1, 1, 'B'), (1, 2, 'W')", database=amavisd)
    # greylisting on for everyone (SQL/enable_global_greylisting.sql)
    server.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)",
        database=iredapd,
    )
    # a triplet still blocked; one whose block has run out; another sender of that client, never retried;
    # one past record_expired (cleanup's); a client that passed last week (AUTH_EXPIRE: 30 days)
    for sender, client, age, block_left, record_left, passed in (
        ("blocked@remote.example", "192.0.2.20", 60, 840, DAY, 0),
        ("waited@remote.example", "192.0.2.21", 1200, -300, DAY, 0),
        ("gaveup@remote.example", "192.0.2.21", 1100, -200, DAY, 0),
        ("expired@remote.example", "192.0.2.22", 3 * DAY, -3 * DAY, -DAY, 0),
        ("friend@remote.example", "192.0.2.23", 7 * DAY, -7 * DAY, 23 * DAY, 1),
        ("v6@remote.example", "2001:db8:0:1::25", 1200, -300, DAY, 0),  # as Postfix wrote the address
    ):
        times = (now - age, now + block_left, now + record_left)
        server.execute(TRACKING, (sender, USER, client, "remote.example", *times, 1, passed), database=iredapd)
    # iRedAPD's SPF job: a big sender's domain and the network its SPF named last run
    server.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES ('ip4.spf.test')", database=iredapd)
    server.execute(
        "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment)"
        " VALUES ('@.', '198.51.100.0/24', 'AUTO-UPDATE: ip4.spf.test')",
        database=iredapd,
    )
    # outbound throttles: the user's counter at 3 of 5, 10 minutes into its hour; OTHER has no counter yet;
    # a counter whose hour ended yesterday (cleanup's)
    server.execute(THROTTLE, (USER, 5), database=iredapd)
    server.execute(THROTTLE, (OTHER, 10), database=iredapd)
    server.execute(THROTTLE, ("gone@example.com", 10), database=iredapd)
    tids = dict(server.query("SELECT account, id FROM throttle", database=iredapd))
    server.execute(COUNTER, (tids[USER], USER, 3, 3000, now - 600, now - 600), database=iredapd)
    server.execute(COUNTER, (tids["gone@example.com"], "gone@example.com", 1, 10, now - DAY, now - DAY), iredapd)
    # session rows of iRedAPD: three from an hour ago, one past LOG_SMTP_SESSIONS_EXPIRE_DAYS (cleanup's)
    for n, age in enumerate((3600, 3599, 3598, 8 * DAY)):
        server.execute(SESSION, (utc_text(now - age), now - age, f"old.{n}", USER), database=iredapd)


def poll_rows(server, sql: str, params: tuple, database: str, timeout: float = 10.0) -> list[tuple]:
    """apd may write a tracking row just after its reply (greylisting's write path): wait for it."""
    deadline = time.monotonic() + timeout
    while not (rows := server.query(sql, params, database=database)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


def outbound(sender: str, **extra: str) -> dict[str, str]:
    return dict(
        rcpt(sender=sender, recipient="someone@remote.example", client_address="203.0.113.5"),
        protocol_state="END-OF-MESSAGE",
        sasl_username=sender,
        sasl_method="PLAIN",
        recipient_count="1",
        size="1000",
        **extra,
    )


def start_on_iredapds_file(server, dns_server, tmp_path) -> tuple[ApdProcess, tuple[int, int]]:
    port, srs_ports = free_port(), (free_port(), free_port())
    proc = ApdProcess(tmp_path / "apd", listen_port=port)
    settings_text = iredapd_settings(server, port, dns_server.nameserver, srs_ports, proc.workdir)
    proc.settings_path.write_text(settings_text)  # iRedAPD's file, as it is
    return proc.start(), srs_ports


@pytest.fixture
def iredapd_database(mariadb_server):
    mariadb_server.truncate("iredmail")  # skips with the reason when ../shared/iredmail is absent
    now = int(time.time())
    fill_as_iredapd_left_it(mariadb_server, now)
    return mariadb_server, mariadb_server.db_name("iredmail", "iredapd"), now


def test_apd_takes_over_iredapds_database_and_settings(iredapd_database, dns_server, tmp_path):
    server, iredapd, now = iredapd_database
    tables_before = sorted(server.tables(iredapd))
    sessions_before = server.query("SELECT * FROM smtp_sessions ORDER BY id", database=iredapd)
    proc, srs_ports = start_on_iredapds_file(server, dns_server, tmp_path)
    try:
        with proc.client() as client:
            # greylisting: the triplet still blocked stays blocked; the one that waited passes
            blocked = rcpt(sender="blocked@remote.example", client_address="192.0.2.20", recipient=USER)
            assert client.ask(**blocked) == GREY
            waited = rcpt(sender="waited@remote.example", client_address="192.0.2.21", recipient=USER)
            passed_at = time.time()
            assert client.ask(**waited) == "DUNNO"
            waited_v6 = rcpt(sender="v6@remote.example", client_address="2001:db8:0:1::25", recipient=USER)
            assert client.ask(**waited_v6) == "DUNNO"
            server.execute(
                "UPDATE greylisting_tracking SET block_expired = %s WHERE sender = 'blocked@remote.example'",
                (now - 1,),
                database=iredapd,
            )
            assert client.ask(**blocked) == "DUNNO"  # its block ran out: passes, as with iRedAPD
            # a client that passed before the switch is not greylisted for a new sender
            friend_new = rcpt(sender="new@other.example", client_address="192.0.2.23", recipient=USER)
            friend_at = time.time()
            assert client.ask(**friend_new) == "DUNNO"
            # a network iRedAPD's SPF job whitelisted is not greylisted
            big = rcpt(sender="news@bigmail.example", client_address="198.51.100.9", recipient=USER)
            assert client.ask(**big) == "DUNNO"
            # a triplet past record_expired starts over (schemas.md §1.12 greylisting 6)
            expired = rcpt(sender="expired@remote.example", client_address="192.0.2.22", recipient=USER)
            assert client.ask(**expired) == GREY
            # a triplet new to the database is greylisted and tracked in iRedAPD's row format
            new = rcpt(sender="new+tag@fresh.example", client_address="192.0.2.30", recipient="user+box@example.com")
            first_seen = time.time()
            assert client.ask(**new) == GREY
            # amavisd white/blacklists (from the client that passed greylisting: greylisting comes first)
            passed_client = "192.0.2.21"
            bad = rcpt(sender="bad@spam.example", recipient=USER, client_address=passed_client)
            assert client.ask(**bad) == replies.REJECT_BLACKLISTED
            good = rcpt(sender="good@friend.example", recipient=USER, client_address=passed_client)
            assert client.ask(**good).startswith("OK")
            # throttle: the counter goes on from 3 of 5 and refuses exactly the message over the limit
            assert client.ask(**outbound(USER)) == "DUNNO"  # 4
            assert client.ask(**outbound(USER)) == "DUNNO"  # 5: the limit
            tls = {"encryption_protocol": "TLSv1.3", "encryption_cipher": "TLS_AES_256_GCM_SHA384"}
            over = outbound(USER, instance="over.1", server_address="192.0.2.1", server_port="587", **tls)
            refused_at = time.time()
            assert client.ask(**over) == replies.REJECT_QUOTA_EXCEEDED
            # a counter new to the database starts as iRedAPD starts it
            counted_at = time.time()
            assert client.ask(**outbound(OTHER)) == "DUNNO"
        # SRS: a bounce to an address iRedAPD rewrote last week goes back; a new rewrite is iRedAPD's
        rewritten_before = srs0_as_iredapd_writes_it("carol@orig.example", now - 7 * DAY)
        assert table_lookup(srs_ports[1], rewritten_before) == "200 carol@orig.example"
        expected_now = srs0_as_iredapd_writes_it("carol@orig.example", time.time())
        assert table_lookup(srs_ports[0], "carol@orig.example") == f"200 {expected_now}"
        new_triplet = poll_rows(
            server,
            "SELECT sender, recipient, client_address, sender_domain, rcpt_domain, init_time, block_expired,"
            " record_expired, blocked_count, passed FROM greylisting_tracking WHERE client_address = %s",
            ("192.0.2.30",),
            iredapd,
        )
    finally:
        proc.stop()
    log = proc.log()
    assert "Traceback" not in log and "unknown setting" not in log, log
    stopped_at = time.time()

    def around(value: int, since: float, until: float = stopped_at) -> bool:
        return int(since) <= value <= int(until) + 1

    grey_rows = server.query(
        "SELECT sender, client_address, passed, blocked_count, init_time, record_expired FROM greylisting_tracking",
        database=iredapd,
    )
    assert all(r[1] != "198.51.100.9" and r[0] != "new@other.example" for r in grey_rows), grey_rows
    by_sender = {r[0]: r[2:] for r in grey_rows}
    # step 3: the passed client's rows live AUTH_EXPIRE days from its new mail
    assert by_sender["friend@remote.example"][0] == 1
    assert around(by_sender["friend@remote.example"][3] - 30 * DAY, friend_at)
    passed, count, init, record = by_sender["expired@remote.example"]
    assert (passed, count) == (0, 1) and around(init, friend_at) and record == init + DAY
    grey = {
        r[0]: r[1:]
        for r in server.query(
            "SELECT sender, passed, blocked_count, record_expired FROM greylisting_tracking", database=iredapd
        )
    }
    # schemas.md §1.12 greylisting 7-8: a retry too soon counts, a pass marks the triplet passed for
    # AUTH_EXPIRE days and drops the client's other unpassed triplets ("gaveup")
    assert grey["blocked@remote.example"][:2] == (1, 2)
    assert grey["waited@remote.example"][:2] == (1, 1)
    assert grey["v6@remote.example"][:2] == (1, 1)
    assert around(grey["waited@remote.example"][2] - 30 * DAY, passed_at)
    assert "gaveup@remote.example" not in grey
    # step 5: the new triplet, extension-stripped, blocked GREYLISTING_BLOCK_EXPIRE minutes, kept a day
    [(sender, recipient, client_ip, sender_domain, rcpt_domain, init, block, record, count, passed)] = new_triplet
    assert (sender, recipient, client_ip, sender_domain, rcpt_domain, count, passed) == (
        "new@fresh.example",
        USER,
        "192.0.2.30",
        "fresh.example",
        "example.com",
        1,
        0,
    )
    assert around(init, first_seen) and block == init + 15 * 60 and record == init + DAY

    counters = dict(
        (r[0], r[1:])
        for r in server.query(
            "SELECT account, cur_msgs, cur_quota, init_time, period FROM throttle_tracking", database=iredapd
        )
    )
    assert counters[USER] == (5, 5000, now - 600, 3600)  # the same window, continued
    # throttle 3: a new counter is (tid, account, cur_msgs = rcpt count, period, cur_quota = size, now, now)
    new_counter = server.query(
        "SELECT t.account, k.cur_msgs, k.cur_quota, k.period, k.init_time, k.last_time, k.last_notify_time"
        " FROM throttle_tracking k JOIN throttle t ON t.id = k.tid WHERE k.account = %s",
        (OTHER,),
        database=iredapd,
    )
    [(account, cur_msgs, cur_quota, period, init, last, notified)] = new_counter
    assert (account, cur_msgs, cur_quota, period, notified) == (OTHER, 1, 1000, 3600, 0)
    assert around(init, counted_at) and last == init

    # the session rows iRedAPD wrote are untouched; apd's follow in the same columns, with its values
    sessions_after = server.query("SELECT * FROM smtp_sessions ORDER BY id", database=iredapd)
    assert sessions_after[: len(sessions_before)] == sessions_before
    assert all(row[0] > sessions_before[-1][0] for row in sessions_after[len(sessions_before) :])
    columns = [
        r[0]
        for r in server.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name ="
            " 'smtp_sessions' ORDER BY ordinal_position",
            (iredapd,),
        )
    ]
    refused = [dict(zip(columns, row)) for row in sessions_after if row[columns.index("instance")] == "over.1"]
    assert len(refused) == 1, sessions_after
    row = refused[0]
    assert around(row["time_num"], refused_at) and str(row["time"]) == utc_text(row["time_num"])
    del row["id"], row["time"], row["time_num"]
    assert row == {  # protocol.md §9.2
        "action": "REJECT",
        "reason": replies.REJECT_QUOTA_EXCEEDED.split(" ", 1)[1],
        "instance": "over.1",
        "client_address": "203.0.113.5",
        "client_name": "mail.example.net",
        "reverse_client_name": "mail.example.net",
        "helo_name": "mail.example.net",
        "sender": USER,
        "sender_domain": "example.com",
        "sasl_username": USER,
        "sasl_domain": "example.com",
        "recipient": "someone@remote.example",
        "recipient_domain": "remote.example",
        "encryption_protocol": "TLSv1.3",
        "encryption_cipher": "TLS_AES_256_GCM_SHA384",
        "server_address": "192.0.2.1",
        "server_port": "587",
    }
    assert sorted(server.tables(iredapd)) == tables_before  # no table of apd's own added


def run_tool(module: str, *args: str, settings_path) -> subprocess.CompletedProcess:
    """A tool as its systemd unit runs it: no arguments, the settings file from APD_SETTINGS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), APD_SETTINGS=str(settings_path))
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_iredapds_settings_pass_check_config_and_drive_the_cleanup_timer(iredapd_database, dns_server, tmp_path):
    server, iredapd, now = iredapd_database
    settings_path = tmp_path / "settings.py"
    srs_ports = (free_port(), free_port())
    settings_path.write_text(iredapd_settings(server, free_port(), dns_server.nameserver, srs_ports, tmp_path))

    # README step 2: apd's reading of the file, with nothing to report
    checked = run_tool("apd", "--check-config", settings_path=settings_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "warning" not in (checked.stdout + checked.stderr).lower(), checked.stdout + checked.stderr
    assert "sql_ml_access_policy(51)" in checked.stdout  # iRedMail's whole list, in iRedAPD's order

    # README step 5: apd-cleanup.timer's job in place of iRedAPD's hourly cleanup_db.py
    cleaned = run_tool("admin.cleanup_db", settings_path=settings_path)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    senders = {r[0] for r in server.query("SELECT sender FROM greylisting_tracking", database=iredapd)}
    assert senders == {f"{name}@remote.example" for name in ("blocked", "waited", "gaveup", "friend", "v6")}
    counters = {r[0] for r in server.query("SELECT account FROM throttle_tracking", database=iredapd)}
    assert counters == {USER}
    sessions = sorted(r[0] for r in server.query("SELECT instance FROM smtp_sessions", database=iredapd))
    assert sessions == ["old.0", "old.1", "old.2"]

    # apd-spf-whitelists.timer's job in place of iRedAPD's spf_to_greylist_whitelists.py: the rows of
    # iRedAPD's last run are replaced by what the domain's SPF names now (DNS_NAMESERVERS of the file)
    refreshed = run_tool("admin.spf_to_greylist_whitelists", settings_path=settings_path)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    spf_rows = server.query("SELECT account, sender, comment FROM greylisting_whitelist_domain_spf", database=iredapd)
    comment = "AUTO-UPDATE: ip4.spf.test"
    assert sorted(spf_rows) == [("@.", "192.0.2.128/25", comment), ("@.", "192.0.2.44", comment)]

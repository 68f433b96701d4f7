"""README "Moving from iRedAPD", done as it says: on a MariaDB holding iRedAPD's schema and the
rows iRedAPD left (throttle counters mid-window, greylisting settings and tracking, amavisd
white/blacklists, session rows), iRedAPD's own settings.py (first line included) starts apd,
and every row keeps its meaning."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time

import pytest

from apd import replies
from apd.settings import DEFAULT_PLUGINS
from tests.helpers.apd_process import ApdProcess, free_port
from tests.helpers.policy_client import rcpt
from tests.helpers.sql_server import PASSWORD

pytestmark = pytest.mark.servers

GREY = "451 4.7.1 Intentional policy rejection, please try again later"
USER = "user@example.com"
PLUGINS = list(DEFAULT_PLUGINS)  # iRedMail's list, written out in the file as iRedMail does


SRS_SECRET = "iRedMail-generated-secret"
SRS_DOMAIN = "mx.example.com"


def srs0_as_iredapd_writes_it(address: str, unix_time: float) -> str:
    """srslib's SRS0 (srs.md §6), computed here independently of apd's codec."""
    local, host = address.split("@")
    day = int(unix_time) // 86400
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


def iredapd_settings(server, port: int, nameserver: str, srs_ports: tuple[int, int]) -> str:
    """settings.py as iRedMail's installer writes it for iRedAPD on MariaDB, plus two lines a
    test needs (its own port; DNS never leaves the machine)."""
    lines = [
        "from libs.default_settings import *",
        "",
        "listen_address = '127.0.0.1'",
        f"listen_port = '{port}'",
        "run_as_user = 'root'",
        "log_level = 'info'",
        "backend = 'mysql'",
        f"plugins = {PLUGINS!r}",
        f"srs_forward_port = '{srs_ports[0]}'",
        f"srs_reverse_port = '{srs_ports[1]}'",
        f"srs_domain = '{SRS_DOMAIN}'",
        f"srs_secrets = ['{SRS_SECRET}']",
    ]
    for db in ("vmail", "amavisd", "iredapd"):
        lines += [
            f"{db}_db_server = '127.0.0.1'",
            f"{db}_db_port = '{server.port}'",
            f"{db}_db_name = '{server.db_name('iredmail', db)}'",
            f"{db}_db_user = '{db}'",
            f"{db}_db_password = '{PASSWORD}'",
        ]
    lines += [f"DNS_NAMESERVERS = ['{nameserver}']", ""]
    return "\n".join(lines)


def fill_as_iredapd_left_it(server, now: int) -> dict[str, int]:
    vmail, amavisd, iredapd = (server.db_name("iredmail", db) for db in ("vmail", "amavisd", "iredapd"))
    server.execute(
        "INSERT INTO domain (domain, transport, active) VALUES ('example.com', 'dovecot', 1)", database=vmail
    )
    server.execute(
        "INSERT INTO mailbox (username, password, domain, maildir, active) VALUES (%s, '', 'example.com', 'm', 1)",
        (USER,),
        database=vmail,
    )
    # amavisd white/blacklists of the user
    server.execute("INSERT INTO users (id, priority, email) VALUES (1, 10, %s)", (USER,), database=amavisd)
    server.execute(
        "INSERT INTO mailaddr (id, priority, email) VALUES (1, 10, 'bad@spam.example'), (2, 10, 'good@friend.example')",
        database=amavisd,
    )
    server.execute("INSERT INTO wblist (rid, sid, wb) VALUES (1, 1, 'B'), (1, 2, 'W')", database=amavisd)
    # greylisting on for everyone; a triplet still blocked, one whose block has run out
    server.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)",
        database=iredapd,
    )
    tracking = (
        "INSERT INTO greylisting_tracking (sender, recipient, client_address, sender_domain, rcpt_domain,"
        " init_time, block_expired, record_expired, blocked_count, passed) VALUES (%s, %s, %s, %s, 'example.com',"
        " %s, %s, %s, 1, 0)"
    )
    server.execute(
        tracking,
        ("blocked@remote.example", USER, "192.0.2.20", "remote.example", now - 60, now + 840, now + 86400),
        database=iredapd,
    )
    server.execute(
        tracking,
        ("waited@remote.example", USER, "192.0.2.21", "remote.example", now - 1200, now - 300, now + 86400),
        database=iredapd,
    )
    # the user's outbound throttle: 5 recipients an hour, 3 counted 10 minutes ago
    server.execute(
        "INSERT INTO throttle (account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts)"
        " VALUES (%s, 'outbound', 100, 3600, -1, 5, -1, -1)",
        (USER,),
        database=iredapd,
    )
    tid = server.query("SELECT id FROM throttle", database=iredapd)[0][0]
    server.execute(
        "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time)"
        " VALUES (%s, %s, 3600, 3, 3000, %s, %s)",
        (tid, USER, now - 600, now - 600),
        database=iredapd,
    )
    # session rows of iRedAPD
    for n in range(3):
        server.execute(
            "INSERT INTO smtp_sessions (time_num, action, reason, instance, client_address, sender, recipient,"
            " recipient_domain) VALUES (%s, 'DUNNO', '', %s, '192.0.2.1', 'a@b.example', %s, 'example.com')",
            (now - 3600 + n, f"old.{n}", USER),
            database=iredapd,
        )
    return {"tid": tid}


def test_apd_takes_over_iredapds_database_and_settings(mariadb_server, dns_server, tmp_path):
    server = mariadb_server
    server.truncate("iredmail")
    now = int(time.time())
    fill_as_iredapd_left_it(server, now)
    iredapd = server.db_name("iredmail", "iredapd")
    tables_before = sorted(server.tables(iredapd))
    sessions_before = server.query("SELECT * FROM smtp_sessions ORDER BY id", database=iredapd)

    port, srs_ports = free_port(), (free_port(), free_port())
    proc = ApdProcess(tmp_path / "apd", listen_port=port)
    settings_text = iredapd_settings(server, port, dns_server.nameserver, srs_ports)
    proc.settings_path.write_text(settings_text)  # iRedAPD's file, as it is
    proc.start()
    try:
        with proc.client() as client:
            # greylisting: the triplet still blocked stays blocked; the one that waited passes
            blocked = rcpt(sender="blocked@remote.example", client_address="192.0.2.20", recipient=USER)
            assert client.ask(**blocked) == GREY
            waited = rcpt(sender="waited@remote.example", client_address="192.0.2.21", recipient=USER)
            assert client.ask(**waited) == "DUNNO"
            server.execute(
                "UPDATE greylisting_tracking SET block_expired = %s WHERE sender = 'blocked@remote.example'",
                (now - 1,),
                database=iredapd,
            )
            assert client.ask(**blocked) == "DUNNO"  # its block ran out: passes, as with iRedAPD
            # amavisd white/blacklists (from the client that passed greylisting: greylisting comes first)
            passed_client = "192.0.2.21"
            bad = rcpt(sender="bad@spam.example", recipient=USER, client_address=passed_client)
            assert client.ask(**bad) == replies.REJECT_BLACKLISTED
            good = rcpt(sender="good@friend.example", recipient=USER, client_address=passed_client)
            assert client.ask(**good).startswith("OK")
            # throttle: the counter goes on from 3 of 5
            outbound = dict(
                rcpt(sender=USER, recipient="someone@remote.example", client_address="203.0.113.5"),
                protocol_state="END-OF-MESSAGE",
                sasl_username=USER,
                sasl_method="PLAIN",
                recipient_count="1",
                size="1000",
            )
            assert client.ask(**outbound) == "DUNNO"  # 4
            assert client.ask(**outbound) == "DUNNO"  # 5: the limit
            assert client.ask(**outbound) == replies.REJECT_QUOTA_EXCEEDED
        # SRS: a bounce to an address iRedAPD rewrote last week goes back; a new rewrite is iRedAPD's
        rewritten_before = srs0_as_iredapd_writes_it("carol@orig.example", now - 7 * 86400)
        assert table_lookup(srs_ports[1], rewritten_before) == "200 carol@orig.example"
        expected_now = srs0_as_iredapd_writes_it("carol@orig.example", time.time())
        assert table_lookup(srs_ports[0], "carol@orig.example") == f"200 {expected_now}"
    finally:
        proc.stop()
    log = proc.log()
    assert "Traceback" not in log and "unknown setting" not in log, log

    passed = server.query(
        "SELECT sender, passed, blocked_count FROM greylisting_tracking ORDER BY sender", database=iredapd
    )
    assert passed == [("blocked@remote.example", 1, 2), ("waited@remote.example", 1, 1)]
    counter = server.query("SELECT cur_msgs, cur_quota, init_time FROM throttle_tracking", database=iredapd)
    assert counter == [(5, 5000, now - 600)]  # the same window, continued
    # the session rows iRedAPD wrote are untouched; apd's follow in the same columns
    sessions_after = server.query("SELECT * FROM smtp_sessions ORDER BY id", database=iredapd)
    assert sessions_after[: len(sessions_before)] == sessions_before
    new_rows = server.query(
        "SELECT action, sender, recipient, sasl_username FROM smtp_sessions WHERE instance NOT LIKE 'old.%%'"
        " ORDER BY id",
        database=iredapd,
    )
    assert ("REJECT", USER, "someone@remote.example", USER) in [tuple(r) for r in new_rows], new_rows
    assert sorted(server.tables(iredapd)) == tables_before  # no table of apd's own added

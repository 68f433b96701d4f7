"""apd explain --from-log on the log lines a real Postfix writes when apd rejects: the request is
rebuilt from the line, and explain gives the answer Postfix logged."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

from tests.helpers.apd_process import ROOT

GLOBAL_ON = "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"


def explain_line(apd, line: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apd", "explain", "-c", str(apd.settings_path), "--from-log", line, *extra],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )


def logged(postfix_server, *markers: str, timeout: float = 10.0) -> str:
    """The one maillog line holding every marker, once postlogd has written it (asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in postfix_server.maillog().splitlines() if all(m in line for m in markers)]
        if found or time.monotonic() > deadline:
            (line,) = found
            return line
        time.sleep(0.05)


def reject_line(postfix_server, recipient: str) -> str:
    return logged(postfix_server, "NOQUEUE: reject: RCPT from", f"to=<{recipient}>")


def test_greylisting_and_blacklist_rejections_explained_from_the_log(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["reject_null_sender", "greylisting", "amavisd_wblist"], GREYLISTING_BYPASS_SPF=False)
    apd.wait_for_log("Starting apd")
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    db.execute(GLOBAL_ON)
    db.execute("INSERT INTO users (id, priority, email) VALUES (1, 10, 'victim@example.com')")
    db.execute("INSERT INTO mailaddr (id, priority, email) VALUES (1, 10, 'spammer@example.net')")
    db.execute("INSERT INTO wblist (rid, sid, wb) VALUES (1, 1, 'B')")
    grey = postfix_server.send("someone@example.net", ["user@example.com"])
    assert grey.rcpt["user@example.com"][0] == 451, grey

    line = reject_line(postfix_server, "user@example.com")
    done = explain_line(apd, line)
    assert done.returncode == 0, done.stderr
    assert "decided by: greylisting" in done.stdout
    assert done.stdout.endswith("action: 451 4.7.1 Intentional policy rejection, please try again later\n")
    assert "Postfix logged: 451 4.7.1 <user@example.com>: Recipient address rejected" in done.stdout
    # explain wrote nothing: still the one row the real attempt made
    assert db.execute("SELECT blocked_count FROM greylisting_tracking").fetchall() == [(1,)]

    db.execute("UPDATE greylisting_tracking SET passed = 1")  # this client has passed: wblist decides next
    black = postfix_server.send("spammer@example.net", ["victim@example.com"])
    assert black.rcpt["victim@example.com"][0] == 554, black
    line = reject_line(postfix_server, "victim@example.com")
    done = explain_line(apd, line, "--json")
    parsed = json.loads(done.stdout)
    assert (parsed["decided_by"], parsed["action"]) == ("amavisd_wblist", "REJECT Blacklisted")
    assert parsed["request"]["client_address"] == "127.0.0.2" and parsed["request"]["sender"] == "spammer@example.net"


def test_a_throttled_message_explained_from_its_end_of_data_line(postfix_server, postfix_apd):
    """smtpd does not log an END-OF-MESSAGE's recipient count: explain names it, and with
    --recipient-count given it gives the answer Postfix logged; the counter does not move."""
    apd = postfix_apd(plugins=["throttle"], NOTIFICATION_RECIPIENTS=[])
    apd.wait_for_log("Starting apd")
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    db.execute(
        "INSERT INTO throttle (account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota)"
        " VALUES ('someone@example.net', 'external', 100, 3600, -1, -1, 1, -1)"
    )
    assert postfix_server.send("someone@example.net", ["a@example.com"]).data[0] == 250
    refused = postfix_server.send("someone@example.net", ["b@example.com"])
    assert refused.data[0] == 554, refused
    line = logged(postfix_server, "reject: END-OF-MESSAGE from")

    unknown_count = explain_line(apd, line)
    assert unknown_count.returncode == 0, unknown_count.stderr
    assert "recipient_count (give" in unknown_count.stdout and "--recipient-count" in unknown_count.stdout
    assert unknown_count.stdout.endswith("action: DUNNO\n")  # 1 used + 0 of 1: not guessed, so not refused

    done = explain_line(apd, line, "--recipient-count", "1", "--json")
    parsed = json.loads(done.stdout)
    assert (parsed["decided_by"], parsed["action"]) == ("throttle", "REJECT Throttling quota exceeded")
    throttle = parsed["checks"][0]
    assert throttle["findings"][-1].startswith("the counting UPDATE refuses: max_msgs"), throttle
    assert "Throttling quota exceeded" in parsed["note"]  # what Postfix logged
    assert db.execute("SELECT cur_msgs FROM throttle_tracking").fetchall() == [(1,)]

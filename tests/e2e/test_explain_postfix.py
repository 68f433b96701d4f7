"""apd explain --from-log on the log lines a real Postfix writes when apd rejects: the request is
rebuilt from the line, and explain gives the answer Postfix logged."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

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


def reject_lines(postfix_server, recipient: str) -> list[str]:
    return [
        line
        for line in postfix_server.maillog().splitlines()
        if "NOQUEUE: reject: RCPT from" in line and f"to=<{recipient}>" in line
    ]


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

    (line,) = reject_lines(postfix_server, "user@example.com")
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
    (line,) = reject_lines(postfix_server, "victim@example.com")
    done = explain_line(apd, line, "--json")
    parsed = json.loads(done.stdout)
    assert (parsed["decided_by"], parsed["action"]) == ("amavisd_wblist", "REJECT Blacklisted")
    assert parsed["request"]["client_address"] == "127.0.0.2" and parsed["request"]["sender"] == "spammer@example.net"

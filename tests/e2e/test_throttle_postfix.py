"""Throttle end to end: a real Postfix asks apd at end of data; the client is 127.0.0.2, an external sender."""

from __future__ import annotations

import sqlite3

SENDER = "someone@example.net"


def setting(apd, **limits) -> sqlite3.Connection:
    apd.wait_for_log("Starting apd")
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    values = {"msg_size": -1, "max_rcpts": -1, "max_msgs": -1, "max_quota": -1, **limits}
    db.execute(
        "INSERT INTO throttle (account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota)"
        " VALUES (?, 'external', 100, 3600, ?, ?, ?, ?)",
        (SENDER, values["msg_size"], values["max_rcpts"], values["max_msgs"], values["max_quota"]),
    )
    return db


def test_the_message_over_the_senders_limit_is_rejected_at_end_of_data(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["throttle"], NOTIFICATION_RECIPIENTS=[])
    db = setting(apd, max_msgs=3)  # recipients per hour

    first = postfix_server.send(SENDER, ["a@example.com"])
    second = postfix_server.send(SENDER, ["b@example.com", "c@example.org"])  # 3 recipients: the limit, reached
    third = postfix_server.send(SENDER, ["d@example.com"])

    for queued in (first, second):
        assert queued.data[0] == 250, queued
        assert queued.queue_id in postfix_server.queue_ids()
    assert all(code == 250 for code, _ in third.rcpt.values()), third  # RCPT is not throttled
    code, text = third.data
    assert code == 554 and text.startswith("5.7.1 "), third
    assert text.endswith("End-of-data rejected: Throttling quota exceeded"), third
    assert third.queue_id is None
    assert db.execute("SELECT account, cur_msgs FROM throttle_tracking").fetchall() == [(SENDER, 3)]


def test_a_message_over_the_size_limit_is_rejected_at_end_of_data(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["throttle"], NOTIFICATION_RECIPIENTS=[])
    setting(apd, msg_size=2000)
    small = postfix_server.send(SENDER, ["a@example.com"])
    body = "x" * 3000
    big = postfix_server.send(SENDER, ["a@example.com"], f"Subject: big\r\n\r\n{body}\r\n")
    assert small.data[0] == 250 and small.queue_id in postfix_server.queue_ids(), small
    assert big.data[0] == 554 and big.data[1].endswith("End-of-data rejected: Message size is too large"), big

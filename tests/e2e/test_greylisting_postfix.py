"""Greylisting end to end: a real Postfix asks apd; the client is 127.0.0.2 (127.0.0.1 is always trusted)."""

from __future__ import annotations

import sqlite3

GLOBAL_ON = "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"


def test_first_delivery_attempt_is_greylisted_and_the_retry_after_the_block_is_accepted(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False)
    apd.wait_for_log("Starting apd")
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    db.execute(GLOBAL_ON)
    sender, rcpt = "someone@example.net", "user@example.com"

    first = postfix_server.send(sender, [rcpt])
    code, text = first.rcpt[rcpt]
    # Postfix puts its "<rcpt>: Recipient address rejected:" between apd's status code and text
    assert code == 451 and text.startswith("4.7.1 "), first
    assert text.endswith("Recipient address rejected: Intentional policy rejection, please try again later"), first
    assert first.queue_id is None
    assert postfix_server.send(sender, [rcpt]).rcpt[rcpt][0] == 451  # retry too soon
    rows = db.execute("SELECT client_address, blocked_count, passed FROM greylisting_tracking").fetchall()
    assert rows == [("127.0.0.2", 2, 0)]

    # expire the block in the database instead of sleeping
    db.execute("UPDATE greylisting_tracking SET init_time = init_time - 1200, block_expired = block_expired - 1200")
    retry = postfix_server.send(sender, [rcpt])
    assert retry.rcpt[rcpt][0] == 250, retry
    assert retry.queue_id in postfix_server.queue_ids()
    assert db.execute("SELECT passed FROM greylisting_tracking").fetchall() == [(1,)]

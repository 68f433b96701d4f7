"""The greylisting check through a real apd subprocess on the embedded SQLite store."""

from __future__ import annotations

import sqlite3

from tests.helpers.policy_client import rcpt

GREY = "451 4.7.1 Intentional policy rejection, please try again later"


def test_first_attempt_greylisted_then_retry_after_block_passes(apd_factory):
    apd = apd_factory(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False)
    apd.wait_for_log("Starting apd")  # the tables exist (the port is bound before they are created)
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    db.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
    )
    with apd.client() as client:
        assert client.ask(**rcpt()) == GREY
        assert client.ask(**rcpt()) == GREY  # too soon
    ((count, passed),) = db.execute("SELECT blocked_count, passed FROM greylisting_tracking").fetchall()
    assert (count, passed) == (2, 0)
    # expire the block in the database instead of sleeping
    db.execute("UPDATE greylisting_tracking SET init_time = init_time - 1200, block_expired = block_expired - 1200")
    with apd.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"
        assert client.ask(**rcpt(sender="another@example.org")) == "DUNNO"  # passed client
    assert db.execute("SELECT passed FROM greylisting_tracking").fetchall() == [(1,)]
    assert "Client has not been seen before, greylisted (example.net)." in apd.log()


def test_plain_sql_changes_apply_to_the_very_next_request(apd_factory):
    apd = apd_factory(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False, workers=2)
    apd.wait_for_log("Starting apd")  # the tables exist (the port is bound before they are created)
    db = sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None)
    with apd.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"  # no settings row: off
        db.execute(
            "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
        )
        assert client.ask(**rcpt()) == GREY
        db.execute("INSERT INTO greylisting_whitelists (account, sender, comment) VALUES ('@.', '192.0.2.0/24', '')")
        assert client.ask(**rcpt()) == "DUNNO"
        db.execute("DELETE FROM greylisting_whitelists")
        assert client.ask(**rcpt()) == GREY
        db.execute("UPDATE greylisting SET active = 0")
        assert client.ask(**rcpt()) == "DUNNO"

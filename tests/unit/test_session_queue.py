"""smtp_sessions rows are written after the replies, in batches (apd/session_queue.py), on a real SQLite file."""

from __future__ import annotations

import logging
import time

import pytest

from apd import checks as registry
from apd.protocol import PolicyRequest
from apd.session_queue import SessionQueue
from apd.settings import defaults
from apd.store import open_store
from apd.store.sessions import ROWS_PER_STATEMENT, insert_sql, session_row
from apd.store.sqlite import initialise
from apd.worker import Worker, answer
from tests.helpers.policy_client import rcpt


@pytest.fixture
def settings(tmp_path):
    settings = defaults().replace(
        backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"), plugins=["reject_null_sender"]
    )
    store = open_store(settings)
    initialise(store.iredapd)
    store.close()
    return settings


@pytest.fixture
def store(settings):
    store = open_store(settings)
    yield store
    store.close()


def recipients(store) -> list[str]:
    return [r[0] for r in store.iredapd.query("SELECT recipient FROM smtp_sessions ORDER BY id")]


def row(recipient: str) -> tuple:
    return session_row({"recipient": recipient}, "DUNNO", time.time())


def test_one_statement_carries_many_rows():
    sql = insert_sql(3)
    assert sql.count("(%s, ") == 3 and sql.startswith("INSERT INTO smtp_sessions (time, time_num, action")


def test_rows_wait_for_flush_and_are_written_in_order(store):
    queue = SessionQueue(store)
    names = [f"u{i}@example.com" for i in range(ROWS_PER_STATEMENT + 10)]  # two statements
    for name in names:
        queue.add(row(name))
    assert recipients(store) == [] and queue.holding()
    queue.flush()
    assert recipients(store) == names and not queue.holding()


def test_a_failed_batch_is_lost_alone_and_logged_once_per_outage(store, caplog):
    queue = SessionQueue(store)
    queue.add(row("before@example.com"))
    queue.flush()
    store.iredapd.execute("ALTER TABLE smtp_sessions RENAME TO away")  # every INSERT fails now
    caplog.set_level(logging.WARNING, logger="apd.session_queue")
    for name in ("lost1@example.com", "lost2@example.com"):
        queue.add(row(name))
        queue.flush()
    assert not queue.holding()  # a failed batch is dropped, not kept to grow
    store.iredapd.execute("ALTER TABLE away RENAME TO smtp_sessions")
    queue.add(row("after@example.com"))
    queue.flush()
    assert recipients(store) == ["before@example.com", "after@example.com"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("<!> Error while logging smtp action: ")  # protocol.md 9.2
    assert "no such table" in messages[0] and "(1 rows lost;" in messages[0]
    assert "written again; 2 rows were lost" in messages[1]
    assert not any(r.exc_info for r in caplog.records)  # no traceback


def test_the_reply_comes_before_the_row_and_a_stopping_worker_writes_what_it_holds(settings, store):
    planned, _ = registry.plan(settings)
    worker = Worker([], settings, planned)
    worker._configure(settings, planned)
    eom = PolicyRequest.build(rcpt(protocol_state="END-OF-MESSAGE", recipient="held@example.com"))
    assert answer(worker.policy, None, eom, time.time()) == "DUNNO"
    assert recipients(store) == []  # answered, the row still held
    worker._shut_down()
    assert recipients(store) == ["held@example.com"]

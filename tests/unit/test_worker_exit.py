"""A stopping worker lets background sends (quota notices on daemon threads) finish, within a bound."""

from __future__ import annotations

import threading
import time

from apd.worker import finish_background_work


def test_a_notice_being_sent_finishes_before_the_worker_exits() -> None:
    sent = threading.Event()
    thread = threading.Thread(target=lambda: (time.sleep(0.2), sent.set()), daemon=True)
    thread.start()
    finish_background_work(3.0)
    assert sent.is_set()


def test_a_hung_send_holds_the_exit_no_longer_than_the_grace() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    started = time.monotonic()
    finish_background_work(0.3)
    assert 0.25 <= time.monotonic() - started < 1.0
    assert thread.is_alive()
    release.set()

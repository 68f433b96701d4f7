"""Rows apd writes after its replies (smtp_sessions, apd/session_queue.py) appear within ~100 ms: wait for them."""

from __future__ import annotations

import time
from typing import Callable


def wait_for_rows(query: Callable[[], list], count: int, timeout: float = 5.0) -> list:
    """``query()``'s rows once there are at least ``count`` of them (or whatever is there at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(rows := query()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return rows

"""smtp_sessions rows held after their replies and written by the worker in batches.

A session row never decides an answer, so it is not written before the reply: the worker
queues it and writes the queue in one INSERT when its loop goes idle, else every
LOG_FLUSH_INTERVAL (apd/worker.py, 0.1 s) or at MAX_PENDING rows: the rhythm of the decision
lines. A crash loses at most the rows of that interval; a stopping worker writes what it holds.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

MAX_PENDING = 256  # rows; a busy worker writes at this many


class SessionQueue:
    """Rows waiting for ``flush``, written through ``store.sessions`` (apd/store/sessions.py)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.pending: list[tuple] = []
        self.lost = 0  # rows lost since the first failed batch; 0 while batches are written

    def add(self, row: tuple) -> None:
        self.pending.append(row)

    def holding(self) -> bool:
        return bool(self.pending)

    def full(self) -> bool:
        return len(self.pending) >= MAX_PENDING

    def flush(self) -> None:
        """Write the held rows in one batch; a failed batch is dropped, logged once per outage."""
        rows = self.pending
        if not rows:
            return
        self.pending = []
        try:
            self.store.sessions.record_many(rows)
        except Exception as exc:  # the answers are sent; losing log rows is acceptable, stalling is not
            if not self.lost:
                # iRedAPD's text (protocol.md 9.2), then what apd adds
                log.warning(
                    "<!> Error while logging smtp action: %s (%d rows lost; not logged again until rows are written)",
                    exc,
                    len(rows),
                )
            self.lost += len(rows)
            return
        if self.lost:
            log.warning("smtp_sessions rows are written again; %d rows were lost", self.lost)
            self.lost = 0

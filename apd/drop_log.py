"""Dropped connections: counted by reason, logged at most once per peer address per window.

A flood of broken or hostile clients must not fill the disk: the first drop of an address is
logged, the next ones within WINDOW seconds are only counted, and the line after the window
(or the sweep that ends it) says how many were suppressed.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

WINDOW = 60.0
MAX_PEERS = 10_000  # addresses remembered at once; beyond that a flood is summed up, not itemised


class DropLog:
    def __init__(self, logger: logging.Logger | Any, window: float = WINDOW, max_peers: int = MAX_PEERS):
        self.log = logger
        self.window = window
        self.max_peers = max_peers
        self.counts: Counter[str] = Counter()  # reason -> drops since the worker started
        self._peers: dict[str, list] = {}  # address -> [window start, suppressed count]
        self._overflow = 0  # drops not logged because MAX_PEERS addresses were being tracked

    def record(self, address: str, reason: str, detail: str, now: float) -> None:
        self.counts[reason] += 1
        entry = self._peers.get(address)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return
        if entry is None and len(self._peers) >= self.max_peers:
            self._overflow += 1
            return
        suppressed = entry[1] if entry is not None else 0
        self._peers[address] = [now, 0]
        self.log.warning(
            "connection from %s closed: %s%s%s",
            address,
            reason,
            f": {detail}" if detail else "",
            _suppressed(suppressed),
        )

    def sweep(self, now: float) -> None:
        """Forget addresses whose window has ended, reporting what was suppressed in it."""
        for address, (started, suppressed) in list(self._peers.items()):
            if now - started < self.window:
                continue
            del self._peers[address]
            if suppressed:
                self.log.warning(
                    "connections from %s: %d more dropped in the last %.0f s (not logged one by one)",
                    address,
                    suppressed,
                    self.window,
                )
        if self._overflow:
            self.log.warning(
                "%d connections dropped from more than %d addresses (not logged one by one)",
                self._overflow,
                self.max_peers,
            )
            self._overflow = 0


def _suppressed(count: int) -> str:
    return f" (suppressed {count} similar messages from this address)" if count else ""

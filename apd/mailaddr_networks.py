"""The network entries of ``amavisd.mailaddr`` in a worker-local radix tree, kept fresh.

iRedAPD scans every ``mailaddr`` row that shares the client's first octet on each request
(and ignores IPv6). apd loads every row that is a strict network (IPv4 or IPv6; a plain IP
counts as a host network, as in iRedAPD) into a py-radix tree once per worker, so a lookup
costs the same for 10 entries or 100,000.

Freshness without a per-request rebuild: the amavisd_wblist lookup statement carries a
change marker, ``COUNT(*), MAX(id)`` of the mailaddr rows above a low-water mark, and the
tree is brought up to date only when the marker differs from what this worker last read.

* An insert, by any tool on any host, gets an id above every id before it (auto-increment),
  so MAX(id) moves.
* An insert that took its id earlier but commits late (another transaction committed a
  higher id first) moves COUNT, as long as its id is still above the mark. The mark is the
  highest id read ``LATE_COMMIT_SECONDS`` ago, and never more than ``MAX_WINDOW`` ids below
  the highest: a quiet list has an empty window (the marker costs one index probe), one just
  changed is watched a minute longer.
* Deletes and edits need no marker: the lookup joins each network id back to ``mailaddr``
  and returns its current ``email``, so a deleted network finds no row and an edited one
  fails ``verify`` (which also schedules a full reload).

When the marker moved, only the rows above the mark are read again and applied to the tree
(added, replaced or removed); the request's statement is re-run only if the client's
matches changed.

Not detected: an UPDATE that turns an old non-network row into a network, an INSERT that
gives an explicit id below the mark, and a transaction that commits ids more than a minute
(or 256 ids) late; neither iRedAdmin nor the admin tool does these. A full reload (at worker
start) picks them up. Half detected: an UPDATE of an old network row to another network; the
new network matches once a client of the old one has asked (``verify`` fails and the tree is
reloaded), or after a reload. A network deleted below the mark stays in the tree but matches
nothing.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from apd.netmatch import NetworkSet, strict_network

LATE_COMMIT_SECONDS = 60.0
MAX_WINDOW = 256


class MailaddrSource(Protocol):
    def mailaddr_networks(self) -> tuple[list[tuple[int, str]], int]: ...

    def mailaddr_above(self, low: int) -> list[tuple[int, str]]: ...


def parse_entry(email: str) -> tuple[bytes, int] | None:
    """The network of a mailaddr value, or None (addresses, wildcards, host bits set)."""
    if not email or "@" in email or "*" in email:
        return None
    return strict_network(email)


class MailaddrNetworks:
    def __init__(
        self,
        source: MailaddrSource,
        late_seconds: float = LATE_COMMIT_SECONDS,
        max_window: int = MAX_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._source = source
        self._late = late_seconds
        self._max_window = max_window
        self._clock = clock
        self._tree = NetworkSet()
        self._entries: dict[int, tuple[tuple[bytes, int], str]] = {}  # id -> (network, text)
        self._loaded = False
        self._window: set[int] = set()  # ids of every mailaddr row above low, as last read
        self._top = -1  # the highest id read
        self._history: list[tuple[float, int]] = []  # (when, highest id) of each read, oldest first
        self.low = -1  # the marker covers rows with id > low
        self.marker: tuple[int, int] = (0, -1)  # expected (count, max id) above low
        self.reloads = 0  # full loads, for tests and logs

    @property
    def size(self) -> int:
        return len(self._entries)

    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.reload()

    def reload(self) -> None:
        """Load every network, then read the rows near the top as a refresh would (they set
        the window; one inserted meanwhile is among them)."""
        self._tree = NetworkSet()
        self._entries = {}
        rows, top = self._source.mailaddr_networks()
        for row_id, email in rows:
            network = parse_entry(email)
            if network is not None:
                self._tree.add_parsed(network, row_id)
                self._entries[row_id] = (network, email)
        self.low, self._top, self._history = max(-1, top - self._max_window), top, []
        self._apply(self._source.mailaddr_above(self.low))
        self._loaded = True
        self.reloads += 1

    def is_current(self, marker: tuple[int, int] | None) -> bool:
        return marker is None or marker == self.marker

    def refresh(self) -> None:
        """Re-read the rows above the mark (the marker moved)."""
        self._apply(self._source.mailaddr_above(self.low))

    def _apply(self, rows: list[tuple[int, str]]) -> None:
        seen = {row_id for row_id, _ in rows}
        if self._entries:
            for row_id in [i for i in self._entries if i > self.low and i not in seen]:
                self._drop(row_id)  # deleted
        for row_id, email in rows:
            known = self._entries.get(row_id)
            if known is not None:
                if known[1] == email:
                    continue
                self._drop(row_id)
            network = parse_entry(email)
            if network is not None:
                self._tree.add_parsed(network, row_id)
                self._entries[row_id] = (network, email)
        self._window = seen
        self._top = max(self._top, max(seen, default=-1))
        self._history.append((self._clock(), self._top))
        self.advance()

    def advance(self) -> None:
        """Raise the mark to the highest id read LATE_COMMIT_SECONDS ago (and to within
        MAX_WINDOW ids of the highest); called before each lookup, cheap when nothing moves."""
        cutoff = self._clock() - self._late
        history = self._history
        while len(history) > 1 and history[1][0] <= cutoff:
            history.pop(0)
        anchor = history[0][1] if history and history[0][0] <= cutoff else -1
        low = max(self.low, anchor, self._top - self._max_window)
        if low > self.low:
            self.low = low
            self._window = {i for i in self._window if i > low}
        self.marker = (len(self._window), max(self._window) if self._window else self.low)

    def _drop(self, row_id: int) -> None:
        network, _ = self._entries.pop(row_id)
        self._tree.discard(network, row_id)

    def match(self, address: str) -> list[int]:
        """mailaddr ids of the networks containing ``address``, most specific first."""
        found = self._tree.matches_with_length(address)
        return [row_id for _, row_id in sorted(found, key=lambda item: (-item[0], item[1]))]

    def verify(self, row_id: int, email: str) -> bool:
        """Is ``email`` (as the database has it now) still the network the tree holds for
        ``row_id``? If not, the next request reloads the whole tree."""
        known = self._entries.get(row_id)
        if known is not None and known[1] == email:
            return True
        self._loaded = False
        return False

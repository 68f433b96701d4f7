"""The whitelist rows of greylisting that an index cannot find, in a worker-local cache kept fresh.

The two whitelist tables (``greylisting_whitelist_domain_spf``, ``greylisting_whitelists``)
are matched per request in two ways:

* rows equal to a sender candidate (``user@d``, ``@d``, ``@.``, the IP, ``a.b.c.*``): one index
  seek on (account, sender) inside the request's statement;
* "special" rows the seek cannot find: networks (any prefix, IPv4 and IPv6, matched with a
  py-radix tree) and rows written with capitals (iRedAPD compares ``LOWER(sender)``). This module
  keeps them per worker: id -> (account, lowercased sender), plus the tree.

Freshness, as for amavisd's mailaddr networks (apd/mailaddr_networks.py): the request's
statement carries a change marker per table, ``COUNT(*), MAX(id)`` of the rows above a
low-water mark, a primary-key range scan. When it moved, the rows above the mark are read
again and applied; the new rows count for the same request.

* An insert gets an id above every id before it (auto-increment), so MAX(id) moves whatever
  the mark: the mark is never above the highest id read.
* An insert that took its id earlier but commits late moves COUNT while its id is above the
  mark. The mark is the highest id read ``LATE_COMMIT_SECONDS`` ago, and never more than
  ``SLACK`` ids below the highest: a quiet table has an empty window (the marker costs one
  index probe instead of a 256-row scan on every request), one just changed is watched a
  minute longer. A full reload keeps that history: the window is about when ids were seen.

The cached rows a request relies on are verified in the same statement: their ids are looked
up and the current text and account are used, so a deleted or edited row never whitelists. A
verified row whose text changed schedules a full reload.

Not seen by the marker: an UPDATE that turns an ordinary row into a network or a capitalised
address, or one network into another, without inserting a row (the count and the highest id do
not move); an INSERT given an explicit id below the mark, or committed more than a minute
late. Neither iRedAdmin nor the tools do that; for plain SQL, each table is read again in full
at least every ``RELOAD_INTERVAL`` seconds, which bounds how long such an edit goes unseen
(detecting it per request would mean scanning the table on every request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from apd.netmatch import NetworkSet, strict_network

SLACK = 256  # the most ids below the highest that the marker watches
LATE_COMMIT_SECONDS = 60.0  # how long an id range stays watched for inserts committed late
RELOAD_INTERVAL = 60.0  # seconds: the longest an in-place UPDATE of a row goes unseen
SPF, WHITELISTS = 1, 2  # the table kinds of apd/store/greylisting.py
TABLE_KINDS = (SPF, WHITELISTS)


class WhitelistSource(Protocol):
    def whitelist_rows_above(self, kind: int, low: int) -> list[tuple[int, str, str]]:
        """(id, account, sender) of the table's rows with id > low."""
        ...


def is_special(sender: str) -> bool:
    """Rows the (account, sender) index seek cannot find."""
    return "/" in sender or sender != sender.lower()


@dataclass
class TableCache:
    rows: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (account, lowered sender)
    networks: NetworkSet = field(default_factory=NetworkSet)
    texts: dict[str, set[int]] = field(default_factory=dict)  # lowered sender -> ids
    slack: int = SLACK
    late_seconds: float = LATE_COMMIT_SECONDS
    low: int = -1  # the marker covers rows with id > low
    marker: tuple[int, int] = (0, -1)  # expected (count, max id) above low
    window: set[int] = field(default_factory=set)  # ids of every row above low, as last read
    top: int = -1  # the highest id read
    history: list[tuple[float, int]] = field(default_factory=list)  # (when, highest id) per read, oldest first
    loaded: bool = False
    loaded_at: float = 0.0  # the caller's clock at the last full load
    stale: bool = False  # a verified row differed: reload before the next request

    def discard(self, row_id: int) -> None:
        old = self.rows.pop(row_id, None)
        if old is None:
            return
        text = old[1]
        ids = self.texts.get(text)
        if ids is not None:
            ids.discard(row_id)
            if not ids:
                del self.texts[text]
        network = strict_network(text) if "/" in text else None
        if network is not None:
            self.networks.discard(network, row_id)

    def add(self, row_id: int, account: str, sender: str) -> None:
        text = sender.lower().strip()
        self.rows[row_id] = (account, text)
        self.texts.setdefault(text, set()).add(row_id)
        network = strict_network(text) if "/" in text else None
        if network is not None:
            self.networks.add_parsed(network, row_id)

    def apply(self, rows: Iterable[tuple[int, str, str]], now: float) -> list[int]:
        """Replace the cached rows above ``low`` with ``rows`` (read at ``now``); returns the
        special ids added."""
        for row_id in [i for i in self.rows if i > self.low]:
            self.discard(row_id)
        ids = set()
        added = []
        for row_id, account, sender in rows:
            row_id = int(row_id)
            ids.add(row_id)
            if sender and is_special(sender):
                self.add(row_id, account or "", sender)
                added.append(row_id)
        self.window = {i for i in ids if i > self.low}
        self.top = max(self.top, max(ids, default=-1))
        self.history.append((now, self.top))
        self.advance(now)
        return added

    def advance(self, now: float) -> None:
        """Raise the mark to the highest id read ``late_seconds`` ago (and to within ``slack``
        ids of the highest); called before each request's statement, cheap when nothing moved."""
        cutoff = now - self.late_seconds
        history = self.history
        while len(history) > 1 and history[1][0] <= cutoff:
            history.pop(0)
        anchor = history[0][1] if history and history[0][0] <= cutoff else -1
        low = max(self.low, anchor, self.top - self.slack)
        if low > self.low:
            self.low = low
            self.window = {i for i in self.window if i > low}
        # An empty range gives COUNT(*) 0 and MAX(id) NULL, which the store reads as -1.
        self.marker = (len(self.window), max(self.window, default=-1))

    def inherit(self, old: "TableCache") -> None:
        """Keep ``old``'s mark and history across a full reload (this table is still empty)."""
        self.low, self.top, self.history = old.low, old.top, list(old.history)

    def candidate_ids(self, client_address: str, senders: Sequence[str]) -> set[int]:
        found = {int(i) for i in self.networks.matches(client_address)}
        for sender in senders:
            found.update(self.texts.get(sender, ()))
        return found


class WhitelistCache:
    """Both tables' special rows for one worker."""

    def __init__(
        self,
        source: WhitelistSource,
        slack: int = SLACK,
        max_age: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        late_seconds: float = LATE_COMMIT_SECONDS,
    ):
        self._source = source
        self._slack = slack
        self._late = late_seconds
        self._max_age = max_age
        self._clock = clock
        self.tables = {kind: self._table() for kind in TABLE_KINDS}
        self.reloads = 0

    def _table(self) -> TableCache:
        return TableCache(slack=self._slack, late_seconds=self._late)

    def prepare(self) -> None:
        """Load (or reload after a failed verification, or when older than ``max_age``) before
        the request's statement, and move each table's mark as time passes."""
        now = self._clock()
        for kind, table in self.tables.items():
            if not table.loaded or table.stale or now - table.loaded_at >= self._max_age:
                fresh = self._table()
                if table.loaded:
                    fresh.inherit(table)
                fresh.apply(self._source.whitelist_rows_above(kind, -1), now)
                fresh.loaded = True
                fresh.loaded_at = now
                self.tables[kind] = fresh
                self.reloads += 1
            else:
                table.advance(now)

    def lows(self) -> dict[int, int]:
        return {kind: table.low for kind, table in self.tables.items()}

    def candidate_ids(self, client_address: str, senders: Sequence[str]) -> dict[int, list[int]]:
        return {kind: sorted(t.candidate_ids(client_address, senders)) for kind, t in self.tables.items()}

    def check(self, verified: Mapping[int, Mapping[int, tuple[str, str]]], asked: Mapping[int, Sequence[int]]) -> None:
        """Schedule a reload for a table whose verified rows differ from the cache."""
        for kind, ids in asked.items():
            table = self.tables[kind]
            current = verified.get(kind, {})
            for row_id in ids:
                row = current.get(row_id)
                cached = table.rows.get(row_id)
                if row is None or cached is None or (row[0], row[1]) != cached:
                    table.stale = True
                    break

    def refresh_moved(self, markers: Mapping[int, tuple[int, int]]) -> dict[int, list[tuple[str, str]]]:
        """Apply the rows above the mark of each table whose marker moved.

        Returns, per table, the (account, lowered sender) of the special rows just added: they
        were not in the request's statement, so the caller matches them itself.
        """
        added: dict[int, list[tuple[str, str]]] = {}
        for kind, marker in markers.items():
            table = self.tables[kind]
            if marker == table.marker:
                continue
            new_ids = table.apply(self._source.whitelist_rows_above(kind, table.low), self._clock())
            added[kind] = [table.rows[i] for i in new_ids]
        return added

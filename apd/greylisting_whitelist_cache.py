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
low-water mark (the highest id seen minus ``SLACK``), a short primary-key range scan. When it
moved, the rows above the mark are read again and applied; the new rows count for the same
request. The cached rows a request relies on are verified in the same statement: their ids are
looked up and the current text and account are used, so a deleted or edited row never
whitelists. A verified row whose text changed schedules a full reload.

Not seen by the marker: an UPDATE that turns an ordinary row into a network or a capitalised
address, or one network into another, without inserting a row (the count and the highest id do
not move). Neither iRedAdmin nor the tools do that; for plain SQL, each table is read again in
full at least every ``RELOAD_INTERVAL`` seconds, which bounds how long such an edit goes unseen
(detecting it per request would mean scanning the table on every request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from apd.netmatch import NetworkSet, strict_network

SLACK = 256
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
    low: int = -1  # the marker covers rows with id > low
    marker: tuple[int, int] = (0, -1)  # expected (count, max id) above low
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

    def apply(self, rows: Iterable[tuple[int, str, str]]) -> list[int]:
        """Replace the cached rows above ``low`` with ``rows``; returns the special ids added."""
        for row_id in [i for i in self.rows if i > self.low]:
            self.discard(row_id)
        ids = []
        added = []
        for row_id, account, sender in rows:
            row_id = int(row_id)
            ids.append(row_id)
            if sender and is_special(sender):
                self.add(row_id, account or "", sender)
                added.append(row_id)
        top = max(ids, default=max(self.low, -1))
        if top > self.low + self.slack:
            self.low = top - self.slack
        self.marker = (sum(1 for i in ids if i > self.low), max((i for i in ids if i > self.low), default=-1))
        return added

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
    ):
        self._source = source
        self._slack = slack
        self._max_age = max_age
        self._clock = clock
        self.tables = {kind: TableCache(slack=slack) for kind in TABLE_KINDS}
        self.reloads = 0

    def prepare(self) -> None:
        """Load (or reload after a failed verification, or when older than ``max_age``) before
        the request's statement."""
        now = self._clock()
        for kind, table in self.tables.items():
            if not table.loaded or table.stale or now - table.loaded_at >= self._max_age:
                fresh = TableCache(slack=self._slack)
                fresh.apply(self._source.whitelist_rows_above(kind, -1))
                fresh.loaded = True
                fresh.loaded_at = now
                self.tables[kind] = fresh
                self.reloads += 1

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
            new_ids = table.apply(self._source.whitelist_rows_above(kind, table.low))
            added[kind] = [table.rows[i] for i in new_ids]
        return added

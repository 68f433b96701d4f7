"""The network entries of ``amavisd.mailaddr`` in a worker-local radix tree, kept fresh.

iRedAPD scans every ``mailaddr`` row that shares the client's first octet on each request
(and ignores IPv6). apd loads every row that is a strict network (IPv4 or IPv6; a plain IP
counts as a host network, as in iRedAPD) into a py-radix tree once per worker, so a lookup
costs the same for 10 entries or 100,000.

Freshness without a per-request rebuild: the amavisd_wblist lookup statement carries a
change marker, ``COUNT(*), MAX(id)`` of the mailaddr rows above a low-water mark (the highest
id seen minus ``SLACK``). That is a short primary-key range scan, yet it moves when

* a row is inserted (auto-increment ids only grow: MAX(id) moves), by any tool on any host;
* a row near the top is deleted, or an insert that took its id earlier commits late
  (COUNT moves; SLACK bounds how late: 256 inserts).

When the marker moved, only the rows above the mark are fetched again and applied to the
tree (added, replaced or removed); the request's statement is re-run only if the client's
matches changed. Rows the marker cannot see are verified instead: the lookup joins each
network id back to ``mailaddr`` and returns its current ``email``, so a deleted network
finds no row and an edited one fails ``verify`` (which also schedules a full reload).

Not detected: an UPDATE that turns an old non-network row (below the mark) into a network,
and an INSERT that gives an explicit id below the mark; neither iRedAdmin nor the admin tool
does either. A full reload (``reload()``, at worker start) picks them up. A network deleted
below the mark stays in the tree but matches nothing (the join finds no row).
"""

from __future__ import annotations

from typing import Protocol

from apd.netmatch import NetworkSet, strict_network

SLACK = 256


class MailaddrSource(Protocol):
    def mailaddr_above(self, low: int) -> list[tuple[int, str]]: ...


def parse_entry(email: str) -> tuple[bytes, int] | None:
    """The network of a mailaddr value, or None (addresses, wildcards, host bits set)."""
    if not email or "@" in email or "*" in email:
        return None
    return strict_network(email)


class MailaddrNetworks:
    def __init__(self, source: MailaddrSource, slack: int = SLACK):
        self._source = source
        self._slack = slack
        self._tree = NetworkSet()
        self._entries: dict[int, tuple[tuple[bytes, int], str]] = {}  # id -> (network, text)
        self._loaded = False
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
        self._tree = NetworkSet()
        self._entries = {}
        self.low = -1
        self._apply(self._source.mailaddr_above(-1))
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
        top = max(seen) if seen else self.low
        self.low = max(self.low, top - self._slack)
        above = [i for i in seen if i > self.low]
        self.marker = (len(above), max(above) if above else self.low)

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

"""IP matching: MYNETWORKS trust (protocol.md §5) and radix-tree network sets (py-radix)."""

from __future__ import annotations

import ipaddress
from typing import Iterable

import radix

from apd.address import wildcard_ipv4

ALWAYS_TRUSTED = frozenset({"127.0.0.1", "::1"})


class NetworkSet:
    """Networks (IPv4 and IPv6) in a radix tree: lookup cost does not grow with the entry count.

    Each network carries a payload (e.g. the list ids or values it stands for); ``matches``
    returns the payloads of every network containing the address, most specific first.
    """

    def __init__(self, entries: Iterable[tuple[str, object]] = ()):
        self._tree = radix.Radix()
        self.size = 0
        for network, payload in entries:
            self.add(network, payload)

    def add(self, network: str, payload: object = None) -> bool:
        """Add a strict network (host bits zero); returns False for anything else."""
        try:
            parsed = ipaddress.ip_network(network, strict=True)
        except ValueError:
            return False
        node = self._tree.search_exact(str(parsed))
        if node is None:
            node = self._tree.add(str(parsed))
            node.data["payloads"] = []
        node.data["payloads"].append(payload)
        self.size += 1
        return True

    def matches(self, address: str) -> list[object]:
        try:
            nodes = self._tree.search_covering(address)
        except (ValueError, TypeError):
            return []
        found: list[object] = []
        for node in nodes:  # py-radix returns the longest prefix first
            found.extend(node.data["payloads"])
        return found

    def contains(self, address: str) -> bool:
        try:
            return self._tree.search_best(address) is not None
        except (ValueError, TypeError):
            return False


class TrustedClients:
    """``is_trusted_client``: 127.0.0.1/::1, exact IP strings, wildcard forms, CIDR networks."""

    def __init__(self, mynetworks: Iterable[str], all_wildcards: bool = False):
        self._ips: set[str] = set()
        self._networks = NetworkSet()
        self._all_wildcards = all_wildcards
        for entry in mynetworks:
            if "/" in entry:
                self._networks.add(entry)  # unparsable networks are dropped, as iRedAPD does
            else:
                self._ips.add(entry)

    def __contains__(self, client_address: str) -> bool:
        if client_address in ALWAYS_TRUSTED or client_address in self._ips:
            return True
        if self._ips.intersection(wildcard_ipv4(client_address, self._all_wildcards)):
            return True
        return self._networks.contains(client_address)

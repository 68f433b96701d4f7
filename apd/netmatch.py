"""IP matching: MYNETWORKS trust (protocol.md §5) and radix-tree network sets (py-radix)."""

from __future__ import annotations

import ipaddress
import socket
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

    def add_parsed(self, network: tuple[bytes, int], payload: object = None) -> None:
        """Add a network already checked by ``strict_network`` (no re-parsing: bulk loads)."""
        packed, masklen = network
        node = self._tree.add(packed=packed, masklen=masklen)  # returns the node when it exists
        node.data.setdefault("payloads", []).append(payload)
        self.size += 1

    def discard(self, network: tuple[bytes, int], payload: object) -> None:
        """Remove one payload of a network added with ``add_parsed``; absent ones are ignored."""
        packed, masklen = network
        node = self._tree.search_exact(packed=packed, masklen=masklen)
        if node is None or payload not in node.data["payloads"]:
            return
        node.data["payloads"].remove(payload)
        self.size -= 1
        if not node.data["payloads"]:
            self._tree.delete(node.prefix)

    def matches_with_length(self, address: str) -> list[tuple[int, object]]:
        """(prefix length, payload) of every network containing ``address``, longest first."""
        try:
            nodes = self._tree.search_covering(address)
        except (ValueError, TypeError):
            return []
        return [(node.prefixlen, payload) for node in nodes for payload in node.data["payloads"]]


def strict_network(text: str) -> tuple[bytes, int] | None:
    """(packed address, prefix length) when ``text`` is a network without host bits (a plain IP
    is a host network), else None: iRedAPD's ``ip_network(text, strict=True)`` test.

    The common ``a.b.c.d/n`` and IPv6 forms take a fast path (socket.inet_pton, integer mask
    test: ~1us instead of ~40us), so tens of thousands of list rows load quickly; anything
    else (netmask notation, scoped IPv6) is left to the ipaddress module.
    """
    address, slash, length = text.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    bits = 128 if family == socket.AF_INET6 else 32
    try:
        packed = socket.inet_pton(family, address)
        masklen = int(length) if slash else bits
        fast = (not slash or (length.isascii() and length.isdigit())) and 0 <= masklen <= bits
    except (OSError, ValueError):
        fast = False
    if fast:
        host_bits = (1 << (bits - masklen)) - 1
        return (packed, masklen) if not int.from_bytes(packed, "big") & host_bits else None
    try:
        parsed = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None
    return parsed.network_address.packed, parsed.prefixlen


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
        if self._ips and self._ips.intersection(wildcard_ipv4(client_address, self._all_wildcards)):
            return True
        return self._networks.size > 0 and self._networks.contains(client_address)

"""Per-request facts, looked up lazily and at most once per request."""

from __future__ import annotations

import time
from typing import Any, Callable

from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest


class RequestContext:
    """What a check may ask about the request beyond its attributes.

    Shared facts (is the client trusted? the alias target of a domain? is a domain local?)
    are memoised here so that several checks asking the same question cost one lookup.
    """

    __slots__ = ("request", "store", "_trusted", "now", "_memo")

    def __init__(self, request: PolicyRequest, store: Any, trusted: TrustedClients, now: float | None = None):
        self.request = request
        self.store = store
        self._trusted = trusted
        self.now = time.time() if now is None else now
        self._memo: dict[tuple, Any] = {}

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def client_trusted(self) -> bool:
        return self.memo(("trusted",), lambda: self.request.client_address in self._trusted)

    def alias_target(self, domain: str) -> str | None:
        """The first ask also fetches the request's own domains, in the same round trip: checks
        ask for the sender's and the recipient's (amavisd_wblist both, greylisting one)."""
        if not domain:
            return None  # no recipient (END-OF-MESSAGE of several) or sender: nothing to look up
        key = ("alias_target", domain.lower())
        if key not in self._memo:
            request = self.request
            domains = [domain, request.recipient_domain, request.sender_domain, request.sasl_username_domain]
            unknown = [
                d for d in dict.fromkeys(d.lower() for d in domains if d) if ("alias_target", d) not in self._memo
            ]
            for name, target in self.store.accounts.alias_targets(unknown).items():
                self._memo[("alias_target", name)] = target
        return self._memo[key]

    def is_local_domain(self, domain: str, include_alias: bool = True, include_backupmx: bool = True) -> bool:
        return self.memo(
            ("local_domain", domain, include_alias, include_backupmx),
            lambda: self.store.accounts.is_local_domain(domain, include_alias, include_backupmx),
        )

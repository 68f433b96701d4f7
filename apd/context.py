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
        return self.memo(("alias_target", domain), lambda: self.store.accounts.alias_target(domain))

    def is_local_domain(self, domain: str, include_alias: bool = True, include_backupmx: bool = True) -> bool:
        return self.memo(
            ("local_domain", domain, include_alias, include_backupmx),
            lambda: self.store.accounts.is_local_domain(domain, include_alias, include_backupmx),
        )

"""Per-request facts, looked up lazily and at most once per request."""

from __future__ import annotations

import time
from typing import Any, Callable

from apd.access_policy import AccessFacts, Recipient, Sender, lookup_addresses, sender_forms
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
        """On SQL the alias part goes through ``alias_target``: the statement that answers it
        also answers the alias targets other checks ask for later (greylisting's recipient)."""
        return self.memo(
            ("local_domain", domain, include_alias, include_backupmx),
            lambda: self.store.accounts.is_local_domain(
                domain, include_alias, include_backupmx, alias_target=self.alias_target
            ),
        )

    def sender_relations(
        self, sender: str, list_address: str, sasl_username: str, strictly: bool, list_member: bool
    ) -> Any:
        """How the sender relates to the login: its own alias, a list or alias it belongs to, an
        mlmmj list (``SenderRelations``, one statement or search; reject_sender_login_mismatch)."""
        return self.memo(
            ("sender_relations", sender, list_address, sasl_username, strictly, list_member),
            lambda: self.store.accounts.sender_relations(sender, list_address, sasl_username, strictly, list_member),
        )

    def spf_allows(self, domain: str, evaluate: Callable[[str, str], bool]) -> bool:
        """Does the SPF of ``domain`` list the client? ``evaluate(client, domain)`` runs once per
        request, whichever check asks first (the forged-sender check, greylisting's bypass)."""
        client = self.request.client_address
        return self.memo(("spf_allows", client, domain.lower()), lambda: evaluate(client, domain))

    def access_policy_facts(self) -> AccessFacts:
        """The recipient's alias-account and mailing-list policy rows with the sender's standing
        in them: one statement, shared by sql_alias_access_policy and sql_ml_access_policy."""
        return self.memo(("access_policy_facts",), self._fetch_access_policy_facts)

    def _fetch_access_policy_facts(self) -> AccessFacts:
        request = self.request
        recipient_domain = request.recipient_domain.lower()
        recipient = Recipient(
            request.recipient_without_ext.lower(), recipient_domain, self.alias_target(recipient_domain)
        )
        sender = Sender(request.sender_without_ext.lower(), request.sender_domain.lower())
        sender_target = self.alias_target(sender.domain)
        accounts = lookup_addresses(recipient, sender, sender_target)
        rows = self.store.accounts.access_policy_rows(accounts, sender_forms(recipient, sender))
        return AccessFacts(sender, recipient, sender_target, rows)

    def account_entry(self, address: str, attrs: tuple[str, ...]) -> tuple[str, dict] | tuple[None, None]:
        """LDAP: the account entry of ``address`` (ldap.md §3.1), fetched once per request."""
        return self.memo(
            ("account_entry", address.lower(), attrs), lambda: self.store.accounts.get_account(address, attrs)
        )

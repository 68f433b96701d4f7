"""The two SRS lookup services: what to answer Postfix for one tcp_table request line.

Forward (``sender_canonical_maps``): rewrite a sender into the SRS domain unless its domain is
the SRS domain, the server's host name, a local mail domain (alias and backup-MX domains too)
or excluded in ``srs_exclude_domains`` (the domain or a parent of it). Reverse
(``recipient_canonical_maps``): turn an SRS address back into the original one.

The reply texts are iRedAPD's (srs.md §3). Unlike iRedAPD, a database that cannot be asked
gives ``400`` (Postfix tries again later) instead of "not found", under which the sender was
forwarded unrewritten or the check counted the domain as not local and rewrote a local sender.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from apd.address import is_email
from apd.errors import StoreError
from apd.log_escape import escape_controls
from apd.srs.codec import Srs, SrsError, is_srs_address
from apd.srs.table import FOUND, MAX_LINE, NOT_FOUND, TRY_AGAIN, Reply, encode_text, requested_key

log = logging.getLogger(__name__)

FORWARD, REVERSE = "sender", "recipient"  # the services, named as iRedAPD's log lines name them

NOT_AN_ADDRESS = "Not a valid email address, bypassed."
IS_SRS_DOMAIN = "Domain is srs_domain, bypassed."
IS_HOSTNAME = "Domain is server hostname, bypassed."
IS_LOCAL = "Domain is a local mail domain, bypassed."
IS_EXCLUDED = "Domain is explicitly excluded, bypassed."
NOT_SRS = "Not a valid SRS address, bypassed."
STORE_DOWN = "Error database unavailable, try again later"
TOO_LONG = "Rewritten address too long, bypassed."


def exclusion_candidates(domain: str) -> list[str]:
    """The strings a ``srs_exclude_domains`` row may hold to exclude ``domain``: the domain and
    each parent, bare and with a leading dot (``a.example.com``: a.example.com, .a.example.com,
    example.com, .example.com, com, .com)."""
    labels = domain.split(".")
    found: list[str] = []
    for start in range(len(labels)):
        suffix = ".".join(labels[start:])
        found += [suffix, "." + suffix]
    return found


def fits(code: str, text: str) -> bool:
    return len(code) + 2 + len(encode_text(text)) <= MAX_LINE


@dataclass
class SrsService:
    """``is_local_domain(domain)`` and ``is_excluded(candidates)`` ask the store; both may raise
    StoreError. ``hostname`` is the server's fully qualified name, found once at start."""

    codec: Srs
    srs_domain: str
    hostname: str
    is_local_domain: Callable[[str], bool]
    is_excluded: Callable[[Sequence[str]], bool]

    def answer(self, service: str, line: str, now: float) -> Reply:
        log.debug("[srs][%s] input: %s", service, escape_controls(line))
        key = requested_key(line)
        if key is None:
            return Reply(NOT_FOUND, f"Unexpected input: {line}")
        if not is_email(key):
            return Reply(NOT_FOUND, NOT_AN_ADDRESS)
        return self.forward(key, now) if service == FORWARD else self.reverse(key, now)

    def forward(self, address: str, now: float) -> Reply:
        domain = address.split("@", 1)[1].lower()
        if domain == self.srs_domain.lower():
            return Reply(NOT_FOUND, IS_SRS_DOMAIN)
        if domain == self.hostname.lower():
            return Reply(NOT_FOUND, IS_HOSTNAME)
        try:
            if self.is_local_domain(domain):
                return Reply(NOT_FOUND, IS_LOCAL)
            if self.is_excluded(exclusion_candidates(domain)):
                return Reply(NOT_FOUND, IS_EXCLUDED)
        except StoreError as exc:
            log.warning("[srs][sender] %s not rewritten now: %s", escape_controls(address), exc)
            return Reply(TRY_AGAIN, STORE_DOWN)
        try:
            rewritten = self.codec.forward(address, self.srs_domain, now)
        except SrsError:
            return Reply(NOT_FOUND)
        if not fits(FOUND, rewritten):
            return Reply(NOT_FOUND, TOO_LONG)
        log.info("[srs][sender]  rewrote: %s -> %s", escape_controls(address), escape_controls(rewritten))
        return Reply(FOUND, rewritten)

    def reverse(self, address: str, now: float) -> Reply:
        if not is_srs_address(address):
            return Reply(NOT_FOUND, NOT_SRS)
        try:
            original = self.codec.reverse(address, now)
        except SrsError:
            return Reply(NOT_FOUND)
        log.info("[srs][recipient]  reversed: %s -> %s", escape_controls(address), escape_controls(original))
        return Reply(FOUND, original)


def enabled(settings: Any) -> bool:
    """The SRS ports run when both a secret and the SRS domain are set (settings.py refuses one
    without the other)."""
    return bool(settings.srs_secrets) and bool(settings.srs_domain)


@lru_cache(maxsize=1)
def server_hostname() -> str:
    """``socket.getfqdn()``, asked once per process (the master asks before forking workers)."""
    return socket.getfqdn()


def build_service(settings: Any, store: Any) -> SrsService | None:
    if not enabled(settings):
        return None
    accounts = store.accounts
    return SrsService(
        Srs(list(settings.srs_secrets)),
        settings.srs_domain,
        server_hostname(),
        lambda domain: accounts.is_local_domain(domain, include_alias=True, include_backupmx=True),
        store.srs_exclusions.any_listed,
    )

"""wblist_rdns: white- or blacklist a client by its reverse DNS name (plugins.md "wblist_rdns")."""

from __future__ import annotations

import logging
from typing import Iterable

from apd import replies
from apd.checks.base import Check

log = logging.getLogger(__name__)


def rdns_candidates(rdns: str) -> list[str]:
    """``mail.example.co.uk`` -> itself, ``.mail.example.co.uk``, ``.example.co.uk``, ``.co.uk``, ``.uk``:
    a row ``name`` matches that name only, a row ``.name`` the name and every subdomain."""
    labels = rdns.split(".")
    return [rdns] + ["." + ".".join(labels[i:]) for i in range(len(labels))]


def decide(rows: Iterable[tuple[str, str]], discard: bool) -> tuple[str | None, str]:
    """(action, matched row name): a whitelist row wins and gives DUNNO, so that only this
    check stops blacklisting; else a blacklist row rejects. Only exact 'W'/'B' count."""
    rows = list(rows)
    for colour in ("W", "B"):
        names = sorted(name for name, wb in rows if wb == colour)
        if names:
            return (replies.DUNNO if colour == "W" else replies.blacklisted(discard)), names[0]
    return None, ""


class WblistRdns(Check):
    name = "wblist_rdns"
    states = frozenset({"RCPT"})

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.discard = bool(settings.WBLIST_DISCARD_INSTEAD_OF_REJECT)  # chosen once, at load

    def check(self, request, ctx):
        if request.sasl_username:
            return None  # outgoing mail
        rdns = request.attrs.get("reverse_client_name")
        if rdns is None:
            return None  # iRedAPD raises on the missing attribute, which also means DUNNO
        if rdns == "unknown" or ctx.client_trusted:
            return None
        action, matched = decide(self.store.rdns.lookup(rdns_candidates(rdns)), self.discard)
        # iRedAPD's log lines name the client's rDNS, not the matching row (which may be a .suffix)
        if action == replies.DUNNO:
            log.info("[%s] Reverse client hostname is whitelisted: %s.", request.client_address, rdns)
        elif action:
            log.info("[%s] Reverse client hostname is blacklisted: %s", request.client_address, rdns)
        log.debug("wblist_rdns: %s matched row %r", rdns, matched)
        return action

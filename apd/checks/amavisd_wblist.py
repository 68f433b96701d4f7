"""amavisd_wblist: the Amavisd per-user, per-domain and global white/blacklists, inbound and
outbound, applied before the mail is queued (plugins.md "amavisd_wblist").

Flow of one request:

1. identities and candidate lists (pure: ``identities``, ``build_candidates``);
2. which directions apply (pure: ``inbound_applies``), from vmail facts shared via ctx;
3. ONE statement on the amavisd database (``AmavisdLists.lookup``): the list rows joining
   the local candidates (``users``) with the external candidates (``mailaddr``, by email, and
   by id for the networks of the client IP from the worker's radix tree), plus the tree's
   change marker (apd/mailaddr_networks.py). Only after a change to ``mailaddr`` is there a
   second statement, and a third only if that change touched the client's networks;
4. the decision (pure: ``rank_*``, ``first_listed``, ``decide``), exactly iRedAPD's
   precedence: recipient account priority first, then sender entry priority (exact entries
   before networks), W before B for the same pair.

iRedAPD fetches ids with several statements and then the list rows; joining them returns
only the ids that have list rows, which is all the precedence loops can act on, so the
decision is the same. Differences: iRedAPD uses CIDR ids as ``users`` ids for outbound
mail (a quirk the spec allows dropping; dropped), and matches no IPv6 networks (apd does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from apd import replies
from apd.address import local_part, policy_addresses, wildcard_ipv4
from apd.checks.base import Check
from apd.errors import StoreError
from apd.mailaddr_networks import MailaddrNetworks
from apd.store.wblist import ListRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identities:
    sender: str  # s: sender_without_ext, or sasl_username for authenticated mail
    sender_domain: str
    recipient: str  # r: recipient_without_ext
    recipient_domain: str
    authenticated: bool


@dataclass(frozen=True)
class Candidates:
    senders: list[str]
    recipients: list[str]


def identities(
    sender: str, sender_domain: str, recipient: str, recipient_domain: str, sasl_username: str, sasl_domain: str
) -> Identities:
    if sasl_username:
        return Identities(sasl_username, sasl_domain, recipient, recipient_domain, True)
    return Identities(sender, sender_domain, recipient, recipient_domain, False)


def build_candidates(
    ids: Identities,
    client_address: str,
    all_wildcards: bool,
    sender_alias_target: str | None,
    recipient_alias_target: str | None,
) -> Candidates:
    """Step 5: senders = expand(s) [+ user@*] + IP + wild(IP) [+ expand(s@alias target)];
    recipients = expand(r) [+ expand(r@alias target)]."""
    senders = policy_addresses(ids.sender)
    if not ids.authenticated:
        senders.append(local_part(ids.sender).split("+", 1)[0] + "@*")
    senders.append(client_address)
    senders += wildcard_ipv4(client_address, all_wildcards)
    if sender_alias_target:
        senders += policy_addresses(local_part(ids.sender) + "@" + sender_alias_target)
    recipients = policy_addresses(ids.recipient)
    if recipient_alias_target:
        recipients += policy_addresses(local_part(ids.recipient) + "@" + recipient_alias_target)
    return Candidates(list(dict.fromkeys(senders)), list(dict.fromkeys(recipients)))


def inbound_applies(
    ids: Identities, recipient_alias_target: str | None, recipient_domain_local: Callable[[], bool]
) -> bool:
    """Step 7: always for unauthenticated mail; for authenticated mail only to a local
    recipient domain (same domain, an alias domain, or hosted here incl. backup MX)."""
    if not ids.authenticated or ids.sender_domain == ids.recipient_domain:
        return True
    return bool(recipient_alias_target) or recipient_domain_local()


def _position(candidates: Sequence[str]) -> dict[str, int]:
    return {value: index for index, value in reversed(list(enumerate(candidates)))}


def rank_inbound(
    rows: Iterable[ListRow], recipients: Sequence[str], senders: Sequence[str], network_order: Sequence[int]
) -> tuple[list[int], list[int], dict[tuple[int, int], set[str]]]:
    """(recipient ids, sender ids, {(rid, sid): colours}) as iRedAPD's loops see them.

    Recipient ids by ``users.priority`` DESC; sender ids by ``mailaddr.priority`` DESC with
    the network ids (in ``network_order``, most specific first) after all exact entries.
    Priority ties, which iRedAPD leaves to the database, go to the earlier candidate.
    """
    r_pos, s_pos = _position(recipients), _position(senders)
    locals_: dict[int, tuple[int, int]] = {}
    exact: dict[int, tuple[int, int]] = {}
    by_network: set[int] = set()
    pairs: dict[tuple[int, int], set[str]] = {}
    for row in rows:
        if row.direction not in ("in", "in-net"):
            continue
        locals_[row.local_id] = (-row.local_priority, r_pos.get(row.local_email, len(r_pos)))
        if row.direction == "in":
            exact[row.ext_id] = (-row.ext_priority, s_pos.get(row.ext_email, len(s_pos)))
        else:
            by_network.add(row.ext_id)
        pairs.setdefault((row.local_id, row.ext_id), set()).add(row.wb)
    sender_ids = sorted(exact, key=lambda i: (exact[i], i))
    sender_ids += [i for i in network_order if i in by_network and i not in exact]
    return sorted(locals_, key=lambda i: (locals_[i], i)), sender_ids, pairs


def rank_outbound(
    rows: Iterable[ListRow], senders: Sequence[str], recipients: Sequence[str]
) -> tuple[list[int], list[int], dict[tuple[int, int], set[str]]]:
    """(local sender ids, external recipient ids, {(rid, sid): colours}) for outbound mail."""
    s_pos, r_pos = _position(senders), _position(recipients)
    locals_: dict[int, tuple[int, int]] = {}
    ext: dict[int, tuple[int, int]] = {}
    pairs: dict[tuple[int, int], set[str]] = {}
    for row in rows:
        if row.direction != "out":
            continue
        locals_[row.local_id] = (-row.local_priority, s_pos.get(row.local_email, len(s_pos)))
        ext[row.ext_id] = (-row.ext_priority, r_pos.get(row.ext_email, len(r_pos)))
        pairs.setdefault((row.ext_id, row.local_id), set()).add(row.wb)
    return sorted(locals_, key=lambda i: (locals_[i], i)), sorted(ext, key=lambda i: (ext[i], i)), pairs


def first_listed(
    outer: Sequence[int],
    inner: Sequence[int],
    pairs: dict[tuple[int, int], set[str]],
    key: Callable[[int, int], tuple[int, int]],
) -> tuple[str, int, int] | None:
    """iRedAPD's loops: for each outer id, for each inner id, W then B (exact 'W'/'B' only).
    Returns (colour, rid, sid) of the first hit."""
    for o in outer:
        for i in inner:
            colours = pairs.get(key(o, i))
            if not colours:
                continue
            rid, sid = key(o, i)
            if "W" in colours:
                return "W", rid, sid
            if "B" in colours:
                return "B", rid, sid
    return None


def decide_inbound(
    local_ids: Sequence[int], sender_ids: Sequence[int], pairs: dict[tuple[int, int], set[str]]
) -> tuple[str, int, int] | None:
    return first_listed(local_ids, sender_ids, pairs, lambda rid, sid: (rid, sid))


def decide_outbound(
    local_ids: Sequence[int], rcpt_ids: Sequence[int], pairs: dict[tuple[int, int], set[str]]
) -> tuple[str, int, int] | None:
    return first_listed(local_ids, rcpt_ids, pairs, lambda sid, rid: (rid, sid))


def decide(
    outbound_hit: tuple[str, int, int] | None, inbound_hit: tuple[str, int, int] | None, discard: bool
) -> str | None:
    """Outbound blacklist ends it; an outbound whitelist is a DUNNO, so inbound still runs."""
    if outbound_hit and outbound_hit[0] == "B":
        return replies.blacklisted(discard)
    if inbound_hit:
        return replies.OK if inbound_hit[0] == "W" else replies.blacklisted(discard)
    if outbound_hit:
        return f"DUNNO outbound_wblist=({outbound_hit[1]}, {outbound_hit[2]}, 'W')"
    return None


class AmavisdWblist(Check):
    name = "amavisd_wblist"
    states = frozenset({"RCPT"})

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.discard = bool(settings.WBLIST_DISCARD_INSTEAD_OF_REJECT)
        self.bypass_outgoing = bool(settings.WBLIST_BYPASS_OUTGOING_EMAIL)
        self.all_wildcards = bool(settings.ENABLE_ALL_WILDCARD_IP)
        self.networks: MailaddrNetworks | None = None
        if store.amavisd is not None:
            # Load the tree now, as the worker starts, not in its first request (100,000
            # entries take about half a second); if the database is down, the first request
            # that needs the tree loads it.
            self.networks = MailaddrNetworks(store.wblist)
            try:
                self.networks.ensure_loaded()
            except StoreError as exc:
                log.warning("amavisd_wblist: networks not loaded yet: %s", exc)

    def check(self, request, ctx):
        if self.store.amavisd is None:
            log.error("amavisd_wblist: no amavisd database configured")
            return None
        ids = identities(
            request.sender_without_ext,
            request.sender_domain,
            request.recipient_without_ext,
            request.recipient_domain,
            request.sasl_username,
            request.sasl_username_domain,
        )
        if not ids.sender or ids.sender == ids.recipient:
            return None  # null senders are never checked, not even against IP lists
        rcpt_target = ctx.alias_target(ids.recipient_domain)
        cands = build_candidates(
            ids, request.client_address, self.all_wildcards, ctx.alias_target(ids.sender_domain), rcpt_target
        )
        outbound = ids.authenticated and not self.bypass_outgoing
        inbound = inbound_applies(
            ids, rcpt_target, lambda: ctx.is_local_domain(ids.recipient_domain, include_alias=False)
        )
        if not (inbound or outbound):
            return None
        rows, network_order = self._fetch(cands, inbound, outbound, request.client_address)
        outbound_hit = decide_outbound(*rank_outbound(rows, cands.senders, cands.recipients)) if outbound else None
        inbound_hit = None
        if inbound and not (outbound_hit and outbound_hit[0] == "B"):
            inbound_hit = decide_inbound(*rank_inbound(rows, cands.recipients, cands.senders, network_order))
        for label, hit in (("outbound_wblist", outbound_hit), ("wblist", inbound_hit)):
            if hit:
                log.info(
                    "%s: %s=(%d, %d, '%s')",
                    "Whitelisted" if hit[0] == "W" else "Blacklisted",
                    label,
                    hit[1],
                    hit[2],
                    hit[0],
                )
        return decide(outbound_hit, inbound_hit, self.discard)

    def _fetch(
        self, cands: Candidates, inbound: bool, outbound: bool, client_address: str
    ) -> tuple[list[ListRow], list[int]]:
        lists = self.store.wblist
        networks = self.networks
        assert networks is not None  # created with the check when there is an amavisd database
        if inbound:
            networks.ensure_loaded()
            networks.advance()
        network_ids = networks.match(client_address) if inbound else []

        def run(net_ids: list[int]):
            return lists.lookup(
                (cands.recipients, cands.senders) if inbound else None,
                (cands.senders, cands.recipients) if outbound else None,
                net_ids,
                networks.low if inbound else None,
            )

        result = run(network_ids)
        if not networks.is_current(result.marker):
            networks.refresh()
            fresh_ids = networks.match(client_address)
            if fresh_ids != network_ids:
                network_ids = fresh_ids
                result = run(network_ids)
        rows = [r for r in result.rows if r.direction != "in-net" or networks.verify(r.ext_id, r.ext_email)]
        return rows, network_ids

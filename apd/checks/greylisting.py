"""greylisting: answer 451 to unknown (sender, recipient, client) triplets until they retry later.

plugins.md "greylisting", with apd's decided fixes (DIFFERENCES.md 6, 7, 9):

* a wildcard IPv4 whitelist or setting entry (``192.0.2.*``) matches its clients;
* a CIDR sender row in ``greylisting`` matches whatever its ``sender_priority``, and sorts as
  a CIDR (70) so that ``--disable --from 192.0.2.0/24`` beats the global ``@.`` row;
* whitelisted networks of any prefix and written in any form (IPv4 and IPv6) match.

Beyond iRedAPD: ``GREYLISTING_TRACK_IPV4_PREFIX`` / ``GREYLISTING_TRACK_IPV6_PREFIX`` track the
client by network, so that a retry from another address of a provider's pool passes.

The decisions are pure functions below; ``Greylisting.check`` only fetches facts (see
apd/store/greylisting.py for the database round trips) and applies them in order.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Sequence, Union

from apd import replies
from apd.address import policy_addresses, wildcard_ipv4
from apd.checks.base import Check
from apd.greylisting_whitelist_cache import SPF, WHITELISTS, WhitelistCache
from apd.store.greylisting import Facts, SettingRow, Times

log = logging.getLogger(__name__)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
NetworkParser = Callable[[str], Optional[Network]]

CIDR_SENDER_PRIORITY = 70  # the priority table's 'cidr' (schemas.md §1.3)
NETWORK_CACHE_SIZE = 20000

# Outcomes of the steps before tracking
WHITELISTED = "whitelisted"
NO_SETTING = "no setting"
DISABLED = "disabled"
ENABLED = "enabled"


@dataclass(frozen=True)
class Timing:
    block_minutes: int
    auth_days: int
    unauth_days: int

    def times(self, now: float) -> Times:
        t = int(now)
        return Times(t, t + self.block_minutes * 60, t + self.unauth_days * 86400, t + self.auth_days * 86400)


# --- pure decisions -------------------------------------------------------------------------


def recipient_candidates(recipient: str, alias_target: str | None) -> list[str]:
    """``expand(R)``, plus ``expand(local@target)`` when the recipient domain is an alias domain."""
    rcpts = policy_addresses(recipient)
    if alias_target and "@" in recipient:
        rcpts += policy_addresses(recipient.split("@", 1)[0] + "@" + alias_target)
    return rcpts


def sender_candidates(sender: str, client_address: str) -> list[str]:
    """``expand(S) + [IP]`` and the ``a.b.c.*`` wildcard as one string (DIFFERENCES.md 6)."""
    senders = policy_addresses(sender) + [client_address]
    normalised = _normalised_ip(client_address)
    if normalised and normalised != client_address:
        senders.append(normalised)  # an IPv6 client written in another form
    senders += wildcard_ipv4(client_address)[:1]
    return senders


def tracking_key(ip: IPAddress, ipv4_prefix: int, ipv6_prefix: int, client_address: str) -> str:
    """What greylisting_tracking.client_address holds: the IP (iRedAPD), or its /N network."""
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    if prefix >= ip.max_prefixlen:
        return client_address
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def whitelisted(
    ip: IPAddress, client_address: str, senders: Sequence[str], entries: Iterable[str], network: NetworkParser
) -> bool:
    """plugins.md step 5 over the rows of both whitelist tables (LOWER(sender) values).

    ``network(text)`` parses a strict network or returns None (callers memoise it).
    """
    candidates = set(senders)
    candidates.add(client_address)
    networks = []
    for entry in entries:
        if entry in candidates:
            return True
        if "/" in entry:
            networks.append(entry)
    return any(_in_network(ip, network(entry)) for entry in networks)


def effective_sender_priority(row: SettingRow, network: NetworkParser) -> int:
    if "/" in row.sender and network(row.sender) is not None:
        return max(row.sender_priority, CIDR_SENDER_PRIORITY)
    return row.sender_priority


def setting_state(ip: IPAddress, senders: Sequence[str], rows: Sequence[SettingRow], network: NetworkParser) -> str:
    """plugins.md step 6: ENABLED, DISABLED or NO_SETTING. The first matching row decides,
    most specific recipient first, then most specific sender."""
    if not rows:
        return NO_SETTING
    candidates = set(senders)
    ordered = sorted(rows, key=lambda r: (-r.priority, -effective_sender_priority(r, network)))
    for row in ordered:
        if row.sender in candidates or ("/" in row.sender and _in_network(ip, network(row.sender))):
            return ENABLED if row.active else DISABLED
    return NO_SETTING


def before_tracking(
    ip: IPAddress, client_address: str, senders: Sequence[str], facts: Facts, network: NetworkParser
) -> str:
    """Steps 5 and 6: WHITELISTED, NO_SETTING, DISABLED, or ENABLED (go on)."""
    if whitelisted(ip, client_address, senders, facts.spf_whitelist + facts.whitelist, network):
        return WHITELISTED
    return setting_state(ip, senders, facts.settings, network)


def needs_spf(bypass_spf: bool, sender_domain: str, srs_domain: str) -> bool:
    """Step 7: is the SPF bypass to be tried? Never for the SRS domain (nor a null sender)."""
    return bypass_spf and bool(sender_domain) and sender_domain != srs_domain


def next_state(row: dict | None, now: int, timing: Timing) -> tuple[dict, bool]:
    """Step 9 as a pure function of the stored triplet: (new row values, greylisted?).

    The SQL statement in apd/store/greylisting.py implements exactly this; tests hold the two
    together.
    """
    t = timing.times(now)
    fresh = {
        "init_time": t.now,
        "block_expired": t.block_expired,
        "record_expired": t.unauth_expired,
        "blocked_count": 1,
        "passed": 0,
    }
    if row is None:
        return fresh, True
    if now > row["record_expired"]:
        return dict(fresh, passed=row["passed"]), True  # passed is not reset (schemas.md §1.12)
    if now < row["block_expired"]:
        return dict(row, blocked_count=row["blocked_count"] + 1), True
    return dict(row, passed=1, record_expired=t.auth_expired), False


def reply(greylist: bool, training_mode: bool, message: str) -> str | None:
    """Step 10."""
    if not greylist or training_mode:
        return None
    return replies.greylisting(message)


def parse_network(text: str) -> Network | None:
    """A strict network (host bits zero), or None."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        return None


def _in_network(ip: IPAddress, net: Network | None) -> bool:
    return net is not None and net.version == ip.version and ip in net


def _normalised_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# --- the check ------------------------------------------------------------------------------


class Greylisting(Check):
    name = "greylisting"
    states = frozenset({"RCPT"})

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.timing = Timing(
            settings.GREYLISTING_BLOCK_EXPIRE,
            settings.GREYLISTING_AUTH_TRIPLET_EXPIRE,
            settings.GREYLISTING_UNAUTH_TRIPLET_EXPIRE,
        )
        self.reply_text = settings.GREYLISTING_MESSAGE
        self.training = settings.GREYLISTING_TRAINING_MODE
        self.bypass_spf = settings.GREYLISTING_BYPASS_SPF
        self.srs_domain = settings.srs_domain
        self.v4_prefix = settings.GREYLISTING_TRACK_IPV4_PREFIX
        self.v6_prefix = settings.GREYLISTING_TRACK_IPV6_PREFIX
        self._networks: dict[str, Network | None] = {}  # parsed whitelist networks: only the parsing is cached
        self._spf = None
        self._whitelists: WhitelistCache | None = None  # worker-local: networks and capitalised rows
        self._whitelists_source = None

    def network(self, text: str) -> Network | None:
        try:
            return self._networks[text]
        except KeyError:
            pass
        if len(self._networks) >= NETWORK_CACHE_SIZE:
            self._networks.clear()
        parsed = self._networks[text] = parse_network(text)
        return parsed

    def read_facts(self, repo, client: str, rcpts: list[str], senders: list[str], keys: list[str]) -> Facts:
        """One statement, plus the whitelist cache's own reads when a table changed."""
        if self._whitelists is None or self._whitelists_source is not repo:
            self._whitelists = WhitelistCache(repo)
            self._whitelists_source = repo
        cache = self._whitelists
        cache.prepare()
        asked = cache.candidate_ids(client, senders)
        facts = repo.facts(rcpts, senders, keys, asked, cache.lows())
        cache.check(facts.verified, asked)
        added = cache.refresh_moved(facts.markers)
        if not added:
            return facts
        accounts = set(rcpts)
        extra = {kind: [text for account, text in rows if account.lower() in accounts] for kind, rows in added.items()}
        return replace(
            facts,
            spf_whitelist=facts.spf_whitelist + tuple(extra.get(SPF, ())),
            whitelist=facts.whitelist + tuple(extra.get(WHITELISTS, ())),
        )

    def spf_allows(self, client: str, sender_domain: str) -> bool:
        if self._spf is None:
            from apd.spf import SpfEvaluator

            self._spf = SpfEvaluator(self.settings)
        return self._spf.is_allowed(client, sender_domain)

    def check(self, request, ctx):
        if request.sasl_username or ctx.client_trusted:
            return None
        client = request.client_address
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            log.debug("greylisting: invalid client address %r", client)
            return None  # iRedAPD fails here, which counts as DUNNO
        sender, recipient = request.sender_without_ext, request.recipient_without_ext
        sender_domain, rcpt_domain = request.sender_domain, request.recipient_domain
        rcpts = recipient_candidates(recipient, ctx.alias_target(rcpt_domain) if rcpt_domain else None)
        senders = sender_candidates(sender, client)
        key = tracking_key(ip, self.v4_prefix, self.v6_prefix, client)
        keys = [key] if key == client else [key, client]  # rows passed before the prefix was set count
        repo = ctx.store.greylisting

        facts = self.read_facts(repo, client, rcpts, senders, keys)
        state = before_tracking(ip, client, senders, facts, self.network)
        if state != ENABLED:
            log.debug("[%s] greylisting: %s", client, state)
            return None
        # through ctx: reject_sender_login_mismatch may have evaluated this SPF already
        spf_match = needs_spf(self.bypass_spf, sender_domain, self.srs_domain) and ctx.spf_allows(
            sender_domain, self.spf_allows
        )
        if spf_match:
            log.info("[%s] Bypass greylisting due to SPF match (%s)", client, sender_domain)
            return None
        times = self.timing.times(ctx.now)
        if facts.client_passed:
            repo.refresh_passed(keys, times.auth_expired)
            log.debug("[%s] Client passed greylisting before", client)
            return None
        tracked = repo.track(sender, recipient, key, sender_domain, rcpt_domain, times)
        if tracked.passed:
            repo.forget_unpassed(key)
            log.info("[%s] Client passed greylisting (%s).", client, sender_domain)
            return None
        if tracked.blocked_count == 1:
            log.info("[%s] Client has not been seen before, greylisted (%s).", client, sender_domain)
        else:
            log.info("[%s] Client retries too soon, greylisted again (%s).", client, sender_domain)
        return reply(True, self.training, self.reply_text)

    def close(self) -> None:
        close = getattr(self._spf, "close", None)
        if close:
            close()

"""SPF as iRedAPD reads it: the set of addresses a domain's SPF record allows (admin-tools.md §7).

This is not an RFC 7208 evaluator. A record is walked into "allow list" entries (IPs,
networks, ``@domain`` from ``ptr``) and a client is allowed when an entry covers it. Used by
the greylisting SPF bypass, the forged-sender check and ``spf_to_greylist_whitelists``.

Which terms count: ``ip4``, ``ip6``, ``a``, ``mx`` (and their ``/len`` forms), ``include``,
``redirect`` (followed like include), ``ptr`` (turned into ``@domain``), with no qualifier or
``+``. ``-``/``~``/``?`` terms, ``all``, ``exists``, ``exp=`` and anything using a macro are
skipped. A and MX hosts give IPv4 entries only (AAAA is never queried, as in iRedAPD).

Bounds, so that a slow or looping domain cannot hold a worker: a deadline for the whole
evaluation (``SPF_TIME_BUDGET``; each query gets min(``DNS_QUERY_TIMEOUT``, time left)), at
most ``SPF_MAX_DNS_QUERIES`` lookups after the first TXT query, and a "queried" set so no
record is expanded twice (include and redirect loops end there).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from apd import metrics
from apd.address import is_domain
from apd.settings import split_host_port

log = logging.getLogger(__name__)

# Negative answers without an SOA, and failures (timeouts, SERVFAIL), are remembered this long.
NEGATIVE_TTL = 60.0
FAILURE_TTL = 30.0
MAX_TTL = 86400.0
CACHE_SIZE = 2048
# Nested include/redirect levels followed, whatever SPF_MAX_DNS_QUERIES allows (Python's stack).
MAX_DEPTH = 50


# --- pure parsing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One whitespace-separated term of an SPF record."""

    qualifier: str  # '+', '-', '~', '?' (for modifiers: '')
    name: str  # mechanism or modifier name, lowercased: 'ip4', 'include', 'redirect', ...
    value: str  # text after ':' or '=' ('' when absent), prefix lengths removed for a/mx
    prefix4: int | None = None  # a/mx '/len'
    prefix6: int | None = None  # a/mx '//len'
    modifier: bool = False


def spf_record(txt_records: Iterable[str]) -> str | None:
    """The first TXT string that is an SPF record (``v=spf1`` followed by a space or the end)."""
    for text in txt_records:
        # iRedAPD strips outer quotes and '" "' joins; dnspython already gives joined strings,
        # but records published with literal quotes inside still need the same mending.
        text = text.strip().strip("\"'").replace('" "', "")
        if text.startswith("v=spf1") and (len(text) == 6 or text[6].isspace()):
            return text
    return None


def parse_term(token: str) -> Term | None:
    """Split a term into qualifier, name, value and prefix lengths; None when malformed."""
    if not token:
        return None
    qualifier = "+"
    if token[0] in "+-~?":
        qualifier, token = token[0], token[1:]
    name_end = len(token)
    for index, char in enumerate(token):
        if char in ":=/":
            name_end = index
            break
    name = token[:name_end].lower()
    rest = token[name_end:]
    if not name:
        return None
    if rest.startswith("="):
        return Term("", name, rest[1:], modifier=True)
    if name in ("a", "mx"):
        if rest.startswith(":"):
            target, slash, after = rest[1:].partition("/")
            prefixes = slash + after
            if not target:
                return None  # 'a:' or 'a:/24': a colon needs a domain
        else:  # 'a', 'a/24', 'a//64'
            target, prefixes = "", rest
        lengths = _prefix_lengths(prefixes)
        if lengths is None:
            return None
        return Term(qualifier, name, target, lengths[0], lengths[1])
    if rest.startswith(":"):
        return Term(qualifier, name, rest[1:])
    if rest:
        return None
    return Term(qualifier, name, "")


def _prefix_lengths(text: str) -> tuple[int | None, int | None] | None:
    """'' -> (None, None); '/24' -> (24, None); '/24//64' -> (24, 64); '//64' -> (None, 64)."""
    if not text:
        return None, None
    v4_text, _, v6_text = text.partition("//")
    prefix4 = prefix6 = None
    if v4_text:
        if not v4_text.startswith("/") or not v4_text[1:].isdigit() or int(v4_text[1:]) > 32:
            return None
        prefix4 = int(v4_text[1:])
    if "//" in text:
        if not v6_text.isdigit() or int(v6_text) > 128:
            return None
        prefix6 = int(v6_text)
    return prefix4, prefix6


def parse_record(record: str) -> tuple[Term, ...]:
    """Every well-formed term after the ``v=spf1`` version tag, in order."""
    terms = []
    for token in record.split()[1:]:
        term = parse_term(token)
        if term is not None:
            terms.append(term)
    return tuple(terms)


def ip_entry(name: str, value: str) -> str | None:
    """Normalised text of an ``ip4``/``ip6`` value, or None when iRedAPD would drop it.

    An address, or a strict network (host bits zero) of the right family.
    """
    try:
        if "/" in value:
            network = ipaddress.ip_network(value, strict=True)
            return str(network) if network.version == (4 if name == "ip4" else 6) else None
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(address) if address.version == (4 if name == "ip4" else 6) else None


def _target(value: str, current: str) -> str | None:
    """The domain a mechanism names: its value, else the current domain; None when unusable."""
    if not value:
        return current
    if "%" in value:  # macros are not expanded
        return None
    name = value.rstrip(".").lower()
    return name if is_domain(name) else None


@dataclass(frozen=True)
class RecordPlan:
    """What one record asks for: direct entries, records to expand, hosts to resolve."""

    entries: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()  # include and redirect targets, in order
    a_hosts: tuple[tuple[str, int | None], ...] = ()  # (name, IPv4 prefix length)
    mx_hosts: tuple[tuple[str, int | None], ...] = ()


def plan_record(domain: str, terms: Iterable[Term]) -> RecordPlan:
    """Sort the terms that count into their four kinds (admin-tools.md §7, ``parse_spf``)."""
    entries: list[str] = []
    includes: list[str] = []
    a_hosts: list[tuple[str, int | None]] = []
    mx_hosts: list[tuple[str, int | None]] = []
    for term in terms:
        if term.modifier:
            if term.name == "redirect":
                target = _target(term.value, "") if term.value else None
                if target:
                    includes.append(target)
            continue
        if term.qualifier != "+":
            continue
        if term.name in ("ip4", "ip6"):
            entry = ip_entry(term.name, term.value)
            if entry:
                entries.append(entry)
        elif term.name == "include":
            target = _target(term.value, "") if term.value else None
            if target:
                includes.append(target)
        elif term.name in ("a", "mx"):
            target = _target(term.value, domain)
            if target:
                (a_hosts if term.name == "a" else mx_hosts).append((target, term.prefix4))
        elif term.name == "ptr":
            target = _target(term.value, domain)
            if target:
                entries.append("@" + target)
    return RecordPlan(tuple(entries), tuple(includes), tuple(a_hosts), tuple(mx_hosts))


def host_entry(address: str, prefix: int | None) -> str:
    """An A record as an entry: the address, or its /prefix network (``a/24``)."""
    if prefix is None or prefix == 32:
        return address
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def entry_covers(entry: str, client: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Does one allow-list entry cover the client? Networks of any prefix count (DIFFERENCES 9)."""
    if entry.startswith("@"):
        return False
    try:
        if "/" in entry:
            network = ipaddress.ip_network(entry, strict=False)
            return network.version == client.version and client in network
        return ipaddress.ip_address(entry) == client
    except ValueError:
        return False


def parse_client(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip.strip())
    except ValueError:
        return None


# --- DNS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsAnswer:
    """Records as text (TXT strings, A addresses, MX host names); () for NXDOMAIN or no data."""

    records: tuple[str, ...]
    ttl: float


class DnsFailure(Exception):
    """No usable answer: timeout, SERVFAIL, REFUSED, malformed name."""


QueryFunction = Callable[[str, str, float], DnsAnswer]


class TtlCache:
    """A bounded LRU map whose entries expire; owned by one evaluator (one per worker)."""

    def __init__(self, max_entries: int = CACHE_SIZE):
        self.max_entries = max_entries
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any, now: float) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if now >= expires:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any, ttl: float, now: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        self._items[key] = (now + min(ttl, MAX_TTL), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class DnsQuery:
    """dnspython lookups against ``DNS_NAMESERVERS`` (the system resolver only when that is empty)."""

    def __init__(self, nameservers: Iterable[str], timeout: float):
        self.nameservers = tuple(nameservers)
        self.timeout = timeout
        self._resolver: Any = None

    def _get_resolver(self) -> Any:
        if self._resolver is None:
            import dns.resolver

            if self.nameservers:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [_nameserver(entry) for entry in self.nameservers]
            else:
                resolver = dns.resolver.Resolver()
            resolver.timeout = self.timeout
            resolver.lifetime = self.timeout
            resolver.cache = None  # the evaluator's TtlCache is the one cache
            self._resolver = resolver
        return self._resolver

    def __call__(self, name: str, rdtype: str, lifetime: float) -> DnsAnswer:
        import dns.exception
        import dns.resolver

        count = metrics.recorder().dns_query
        try:
            resolver = self._get_resolver()
            answer = resolver.resolve(name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            count("nxdomain")
            responses = list(exc.responses().values()) if hasattr(exc, "responses") else []
            return DnsAnswer((), _negative_ttl(responses[0] if responses else None))
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            count("timeout" if isinstance(exc, dns.exception.Timeout) else "failure")
            raise DnsFailure(f"{rdtype} {name}: {exc.__class__.__name__}") from exc
        count("answer")
        if answer.rrset is None:
            return DnsAnswer((), _negative_ttl(answer.response))
        return DnsAnswer(tuple(_rdata_text(rdtype, rdata) for rdata in answer.rrset), float(answer.rrset.ttl))


def _nameserver(entry: str) -> Any:
    import dns.nameserver

    host, port = split_host_port(entry)
    return dns.nameserver.Do53Nameserver(host, port or 53)


def _rdata_text(rdtype: str, rdata: Any) -> str:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return rdata.exchange.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


def _negative_ttl(response: Any) -> float:
    """RFC 2308: the SOA's TTL, at most its MINIMUM field; a default when there is no SOA."""
    import dns.rdatatype

    for rrset in getattr(response, "authority", None) or ():
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL


# --- evaluation ---------------------------------------------------------------------------


@dataclass
class Seen:
    """State several ``collect`` calls share (the whitelist tool's "queried" and "returned" sets).

    ``queried`` holds ``spf:<domain>``, ``a:<host>`` and ``mx:<domain>`` keys; ``returned``
    the entries already handed out, so a later domain does not get them again.
    """

    queried: set[str] = field(default_factory=set)
    returned: set[str] = field(default_factory=set)

    def spf_queried(self, domain: str) -> bool:
        return "spf:" + domain.lower() in self.queried


@dataclass(frozen=True)
class SpfResult:
    domain: str
    spf_found: bool  # an SPF record was found (else: MX fallback, admin-tools.md §3)
    entries: tuple[str, ...]  # IPs, networks and '@domain' (ptr), in discovery order
    complete: bool  # False when the time budget, the lookup limit or a DNS failure cut it short

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(e for e in self.entries if not e.startswith("@"))

    @property
    def ptr_domains(self) -> tuple[str, ...]:
        return tuple(e for e in self.entries if e.startswith("@"))


@dataclass
class _Walk:
    """One evaluation's bookkeeping."""

    deadline: float
    seen: Seen
    lookups: int = 0
    complete: bool = True
    out_of_time: bool = False  # SPF_TIME_BUDGET ran out (counted once per walk in the metrics)


class SpfEvaluator:
    """SPF lookups for one worker: its own resolver settings, answer cache and bounds."""

    def __init__(
        self,
        settings: Any,
        query: QueryFunction | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = CACHE_SIZE,
    ):
        self.query_timeout = float(settings.DNS_QUERY_TIMEOUT)
        self.max_lookups = int(settings.SPF_MAX_DNS_QUERIES)
        self.time_budget = float(settings.SPF_TIME_BUDGET)
        self._query = query or DnsQuery(settings.DNS_NAMESERVERS, self.query_timeout)
        self._clock = clock
        self.cache = TtlCache(cache_size)

    # --- public

    def is_allowed(self, client_ip: str, domain: str) -> bool:
        """Is ``client_ip`` listed in the SPF record of ``domain``? (``is_allowed_server_in_spf``)"""
        client = parse_client(client_ip) if client_ip else None
        domain = _clean_domain(domain)
        if client is None or not domain:
            return False
        walk = self._start()
        record = self._fetch_spf(domain, walk, counted=False)
        if record is None:
            return False
        for entry in self._expand(domain, record, walk):
            if entry_covers(entry, client):
                return True
        return False

    def collect(self, domain: str, seen: Seen | None = None) -> SpfResult:
        """Every entry the SPF of ``domain`` allows; without SPF, the IPv4 addresses of its MX hosts.

        With a shared ``seen``, records and entries already expanded for an earlier domain are
        not expanded or returned again (check ``seen.spf_queried(domain)`` first to skip a
        domain that an earlier one included).
        """
        domain = _clean_domain(domain)
        walk = self._start(seen)
        if not domain:
            return SpfResult(domain, False, (), True)
        record = self._fetch_spf(domain, walk, counted=False)
        found = record is not None
        found_entries = self._expand(domain, record, walk) if found else self._mx_hosts(domain, None, walk)
        entries: list[str] = []
        for entry in found_entries:
            if entry not in walk.seen.returned:
                walk.seen.returned.add(entry)
                entries.append(entry)
        return SpfResult(domain, found, tuple(entries), walk.complete)

    # --- the walk

    def _start(self, seen: Seen | None = None) -> _Walk:
        return _Walk(self._clock() + self.time_budget, seen if seen is not None else Seen())

    def _count(self, walk: _Walk, what: str) -> bool:
        """Take one lookup from the allowance; False (and log once) when it is used up."""
        if walk.lookups >= self.max_lookups:
            if walk.complete:
                log.info("SPF: lookup limit (%d) reached at %s", self.max_lookups, what)
            walk.complete = False
            return False
        walk.lookups += 1
        return True

    def _fetch_spf(self, domain: str, walk: _Walk, counted: bool = True) -> str | None:
        key = "spf:" + domain
        if key in walk.seen.queried:
            return None
        if counted and not self._count(walk, key):
            return None
        answer = self._lookup(domain, "TXT", walk)
        walk.seen.queried.add(key)
        return spf_record(answer.records) if answer else None

    def _expand(self, domain: str, record: str, walk: _Walk, depth: int = 0) -> Iterator[str]:
        plan = plan_record(domain, parse_record(record))
        yield from plan.entries
        for target in plan.includes:
            if "spf:" + target in walk.seen.queried:
                continue
            if depth >= MAX_DEPTH:
                walk.complete = False
                break
            nested = self._fetch_spf(target, walk)
            if nested is not None:
                yield from self._expand(target, nested, walk, depth + 1)
        for host, prefix in plan.a_hosts:
            yield from self._a_host(host, prefix, walk)
        for name, prefix in plan.mx_hosts:
            yield from self._mx_hosts(name, prefix, walk)

    def _a_host(self, host: str, prefix: int | None, walk: _Walk) -> Iterator[str]:
        key = "a:" + host if prefix is None else f"a:{host}/{prefix}"
        if key in walk.seen.queried or not self._count(walk, key):
            return
        answer = self._lookup(host, "A", walk)
        if answer is None:
            return
        walk.seen.queried.add(key)
        for address in answer.records:
            yield host_entry(address, prefix)

    def _mx_hosts(self, name: str, prefix: int | None, walk: _Walk) -> Iterator[str]:
        key = "mx:" + name if prefix is None else f"mx:{name}/{prefix}"
        if key in walk.seen.queried or not self._count(walk, key):
            return
        answer = self._lookup(name, "MX", walk)
        walk.seen.queried.add(key)
        if answer is None:
            return
        for host in answer.records:
            host = host.rstrip(".").lower()
            if is_domain(host):
                yield from self._a_host(host, prefix, walk)

    def _lookup(self, name: str, rdtype: str, walk: _Walk) -> DnsAnswer | None:
        """One cached query within the walk's deadline; None on failure or when out of time."""
        key = (name, rdtype)
        now = self._clock()
        cached = self.cache.get(key, now)
        if cached is not None:
            if isinstance(cached, DnsFailure):
                walk.complete = False
                return None
            return cached
        remaining = walk.deadline - now
        if remaining <= 0:
            if walk.complete:
                log.info("SPF: time budget (%.1fs) used up before %s %s", self.time_budget, rdtype, name)
            _budget_spent(walk)
            walk.complete = False
            return None
        lifetime = min(self.query_timeout, remaining)
        try:
            answer = self._query(name, rdtype, lifetime)
        except DnsFailure as exc:
            log.debug("SPF: DNS lookup failed: %s", exc)
            if lifetime >= self.query_timeout:  # a query cut short by the budget proves nothing
                self.cache.put(key, exc, FAILURE_TTL, self._clock())
            elif self._clock() >= walk.deadline:
                _budget_spent(walk)
            walk.complete = False
            return None
        self.cache.put(key, answer, answer.ttl, self._clock())
        return answer


def _budget_spent(walk: _Walk) -> None:
    """Counts an evaluation cut short by SPF_TIME_BUDGET once, whether a lookup was skipped or
    the last one allowed timed out (the log line above is only for a walk complete until then)."""
    if not walk.out_of_time:
        walk.out_of_time = True
        metrics.recorder().spf_budget_exhausted()


def _clean_domain(domain: str) -> str:
    return (domain or "").strip().rstrip(".").lower()

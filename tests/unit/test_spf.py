"""SPF parsing (pure) and the walk's bounds, against an in-memory zone and a fake clock."""

from __future__ import annotations

import ipaddress

import pytest

from apd import settings as settings_module
from apd.spf import (
    DnsAnswer,
    DnsFailure,
    RecordPlan,
    Seen,
    SpfEvaluator,
    Term,
    TtlCache,
    entry_covers,
    host_entry,
    ip_entry,
    parse_record,
    parse_term,
    plan_record,
    spf_record,
)


@pytest.mark.parametrize(
    "token, term",
    [
        ("ip4:192.0.2.0/24", Term("+", "ip4", "192.0.2.0/24")),
        ("+ip4:192.0.2.1", Term("+", "ip4", "192.0.2.1")),
        ("-ip4:192.0.2.1", Term("-", "ip4", "192.0.2.1")),
        ("~all", Term("~", "all", "")),
        ("?all", Term("?", "all", "")),
        ("all", Term("+", "all", "")),
        ("IP6:2001:db8::/32", Term("+", "ip6", "2001:db8::/32")),
        ("include:_spf.example.test", Term("+", "include", "_spf.example.test")),
        ("redirect=_spf.example.test", Term("", "redirect", "_spf.example.test", modifier=True)),
        ("exp=explain.example.test", Term("", "exp", "explain.example.test", modifier=True)),
        ("a", Term("+", "a", "")),
        ("a/24", Term("+", "a", "", 24)),
        ("a//64", Term("+", "a", "", None, 64)),
        ("a/24//64", Term("+", "a", "", 24, 64)),
        ("a:mail.example.test", Term("+", "a", "mail.example.test")),
        ("a:mail.example.test/28", Term("+", "a", "mail.example.test", 28)),
        ("mx", Term("+", "mx", "")),
        ("mx/24", Term("+", "mx", "", 24)),
        ("mx:example.test/30//120", Term("+", "mx", "example.test", 30, 120)),
        ("ptr", Term("+", "ptr", "")),
        ("ptr:example.test", Term("+", "ptr", "example.test")),
        ("exists:%{i}.bl.example.test", Term("+", "exists", "%{i}.bl.example.test")),
        # malformed: skipped safely
        ("", None),
        ("+", None),
        (":x", None),
        ("a/33", None),
        ("a/x", None),
        ("a//129", None),
        ("mx/24/", None),
        ("ip4/24", None),
        ("all/24", None),
        ("a:", None),
        ("mx:/24", None),
    ],
)
def test_parse_term(token, term):
    assert parse_term(token) == term


@pytest.mark.parametrize(
    "records, expected",
    [
        (["v=spf1 -all"], "v=spf1 -all"),
        (["google-site-verification=x", "v=spf1 mx -all"], "v=spf1 mx -all"),
        (["v=spf1 a", "v=spf1 mx"], "v=spf1 a"),  # the first one wins
        (["v=spf1"], "v=spf1"),
        (["v=spf10 a"], None),
        (["v=spf1\tip4:192.0.2.1"], "v=spf1\tip4:192.0.2.1"),
        (["V=SPF1 a"], None),  # case-sensitive, as iRedAPD
        (['"v=spf1 ip4:66.220.157" ".0/25 -all"'], "v=spf1 ip4:66.220.157.0/25 -all"),  # mended split
        (["spf2.0/pra a"], None),
        ([], None),
    ],
)
def test_spf_record(records, expected):
    assert spf_record(records) == expected


@pytest.mark.parametrize(
    "name, value, entry",
    [
        ("ip4", "192.0.2.1", "192.0.2.1"),
        ("ip4", "192.0.2.0/24", "192.0.2.0/24"),
        ("ip4", "192.0.2.128/25", "192.0.2.128/25"),
        ("ip4", "192.0.2.1/24", None),  # host bits set: dropped, as iRedAPD
        ("ip4", "192.0.2.300", None),
        ("ip4", "2001:db8::1", None),
        ("ip6", "2001:DB8::1", "2001:db8::1"),
        ("ip6", "2001:db8::/32", "2001:db8::/32"),
        ("ip6", "2001:db8::1/32", None),
        ("ip6", "192.0.2.1", None),
        ("ip4", "", None),
    ],
)
def test_ip_entry(name, value, entry):
    assert ip_entry(name, value) == entry


@pytest.mark.parametrize(
    "record, plan",
    [
        ("v=spf1 ip4:192.0.2.1 ip6:2001:db8::/48 -all", RecordPlan(("192.0.2.1", "2001:db8::/48"))),
        ("v=spf1 -ip4:192.0.2.1 ~ip4:192.0.2.2 ?ip4:192.0.2.3 +ip4:192.0.2.4", RecordPlan(("192.0.2.4",))),
        ("v=spf1 include:a.test -include:b.test redirect=c.test", RecordPlan((), ("a.test", "c.test"))),
        ("v=spf1 a a:mail.d.test/28 a/24", RecordPlan(a_hosts=(("d.test", None), ("mail.d.test", 28), ("d.test", 24)))),
        (
            "v=spf1 mx mx:other.test mx/24",
            RecordPlan(mx_hosts=(("d.test", None), ("other.test", None), ("d.test", 24))),
        ),
        ("v=spf1 ptr ptr:Other.Test", RecordPlan(("@d.test", "@other.test"))),
        ("v=spf1 exists:%{i}.x.test include:%{d}.x.test a:%{h}.test all exp=e.test", RecordPlan()),
        ("v=spf1 include:not_a_domain a:x", RecordPlan()),
        ("v=spf1 include:trailing.test.", RecordPlan((), ("trailing.test",))),
        ("v=spf1 foo=bar unknown:thing", RecordPlan()),
    ],
)
def test_plan_record(record, plan):
    assert plan_record("d.test", parse_record(record)) == plan


@pytest.mark.parametrize(
    "entry, client, covered",
    [
        ("192.0.2.1", "192.0.2.1", True),
        ("192.0.2.1", "192.0.2.2", False),
        ("192.0.2.0/24", "192.0.2.77", True),
        ("192.0.2.128/25", "192.0.2.200", True),  # DIFFERENCES 9: iRedAPD ignores networks without '.0/'
        ("192.0.2.128/25", "192.0.2.100", False),
        ("10.0.0.0/8", "10.200.1.1", True),
        ("2001:db8::/32", "2001:db8:1::5", True),
        ("2001:db8::/32", "192.0.2.1", False),
        ("2001:db8::1", "2001:DB8:0::1", True),
        ("@example.test", "192.0.2.1", False),
    ],
)
def test_entry_covers(entry, client, covered):
    assert entry_covers(entry, ipaddress.ip_address(client)) is covered


@pytest.mark.parametrize(
    "address, prefix, entry",
    [("192.0.2.7", None, "192.0.2.7"), ("192.0.2.7", 32, "192.0.2.7"), ("192.0.2.7", 24, "192.0.2.0/24")],
)
def test_host_entry(address, prefix, entry):
    assert host_entry(address, prefix) == entry


def test_ttl_cache_expires_and_is_bounded():
    cache = TtlCache(max_entries=2)
    cache.put("a", 1, ttl=10, now=100)
    assert cache.get("a", now=109.9) == 1
    assert cache.get("a", now=110) is None
    cache.put("a", 1, ttl=10, now=0)
    cache.put("b", 2, ttl=10, now=0)
    cache.get("a", now=1)  # a is now the most recently used
    cache.put("c", 3, ttl=10, now=1)
    assert (cache.get("a", 2), cache.get("b", 2), cache.get("c", 2)) == (1, None, 3)
    cache.put("z", 0, ttl=0, now=0)  # TTL 0: not cached
    assert cache.get("z", 0) is None


# --- the walk, against an in-memory zone ----------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDns:
    """Zone: {(name, type): [records]}; names in ``slow`` cost ``lifetime`` seconds and time out."""

    def __init__(self, zone, clock: FakeClock, slow=(), ttl=300):
        self.zone = zone
        self.clock = clock
        self.slow = set(slow)
        self.ttl = ttl
        self.queries: list[tuple[str, str, float]] = []

    def __call__(self, name: str, rdtype: str, lifetime: float) -> DnsAnswer:
        self.queries.append((name, rdtype, lifetime))
        if name in self.slow:
            self.clock.now += lifetime
            raise DnsFailure("timeout")
        return DnsAnswer(tuple(self.zone.get((name, rdtype), ())), self.ttl)


def evaluator(zone, slow=(), **overrides):
    clock = FakeClock()
    dns = FakeDns(zone, clock, slow)
    settings = settings_module.defaults().replace(**overrides)
    return SpfEvaluator(settings, query=dns, clock=clock), dns, clock


ZONE = {
    ("d.test", "TXT"): ["v=spf1 ip4:192.0.2.0/25 include:inc.test a mx/24 ptr ~all"],
    ("inc.test", "TXT"): ["other text", "v=spf1 ip6:2001:db8::/32 redirect=red.test"],
    ("red.test", "TXT"): ["v=spf1 ip4:198.51.100.9 -all"],
    ("d.test", "A"): ["203.0.113.5"],
    ("d.test", "MX"): ["mx1.d.test", "mx2.d.test"],
    ("mx1.d.test", "A"): ["203.0.113.70"],
    ("mx2.d.test", "A"): ["203.0.114.80"],
    ("nospf.test", "MX"): ["mx.nospf.test"],
    ("mx.nospf.test", "A"): ["192.0.2.200", "192.0.2.201"],
    ("loop1.test", "TXT"): ["v=spf1 include:loop2.test ip4:192.0.2.1"],
    ("loop2.test", "TXT"): ["v=spf1 redirect=loop1.test"],
}


def test_collect_walks_in_iredapd_order():
    spf, dns, _ = evaluator(ZONE)
    result = spf.collect("D.Test.")
    assert result.spf_found and result.complete
    assert result.entries == (
        "192.0.2.0/25",
        "@d.test",
        "2001:db8::/32",
        "198.51.100.9",
        "203.0.113.5",
        "203.0.113.0/24",
        "203.0.114.0/24",
    )
    assert result.ptr_domains == ("@d.test",)
    assert "@d.test" not in result.ips


@pytest.mark.parametrize(
    "client, allowed",
    [
        ("192.0.2.100", True),  # ip4 network
        ("192.0.2.200", False),
        ("2001:db8:5::1", True),  # include -> ip6
        ("198.51.100.9", True),  # include -> redirect
        ("203.0.113.5", True),  # a
        ("203.0.113.99", True),  # mx/24
        ("203.0.114.1", True),
        ("203.0.115.1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_is_allowed(client, allowed):
    spf, _, _ = evaluator(ZONE)
    assert spf.is_allowed(client, "d.test") is allowed


def test_is_allowed_stops_at_the_first_match():
    spf, dns, _ = evaluator(ZONE)
    assert spf.is_allowed("192.0.2.1", "d.test")
    assert [q[:2] for q in dns.queries] == [("d.test", "TXT")]


def test_no_spf_and_empty_domain():
    spf, _, _ = evaluator(ZONE)
    assert not spf.is_allowed("192.0.2.200", "nospf.test")
    assert not spf.is_allowed("192.0.2.1", "")


def test_collect_falls_back_to_mx_hosts_without_spf():
    spf, _, _ = evaluator(ZONE)
    result = spf.collect("nospf.test")
    assert not result.spf_found
    assert result.entries == ("192.0.2.200", "192.0.2.201")


def test_loop_ends_after_one_expansion_of_each_record():
    spf, dns, _ = evaluator(ZONE)
    assert spf.collect("loop1.test").entries == ("192.0.2.1",)
    assert [q[0] for q in dns.queries] == ["loop1.test", "loop2.test"]
    assert not spf.is_allowed("192.0.2.2", "loop1.test")


def test_lookup_limit_counts_every_lookup_after_the_first():
    chain = {(f"c{i}.test", "TXT"): [f"v=spf1 ip4:192.0.2.{i} include:c{i + 1}.test"] for i in range(40)}
    spf, dns, _ = evaluator(chain, SPF_MAX_DNS_QUERIES=5)
    result = spf.collect("c0.test")
    assert result.entries == tuple(f"192.0.2.{i}" for i in range(6))  # first TXT + 5 counted
    assert not result.complete
    assert len(dns.queries) == 6
    assert not spf.is_allowed("192.0.2.7", "c0.test")


def test_cached_answers_are_reused_within_their_ttl():
    spf, dns, clock = evaluator(ZONE)
    spf.collect("d.test")
    count = len(dns.queries)
    assert spf.collect("d.test").entries  # all from the cache
    assert len(dns.queries) == count
    clock.now += 301  # TTL 300 passed
    spf.collect("d.test")
    assert len(dns.queries) == 2 * count


def test_time_budget_bounds_a_slow_walk():
    zone = {("s.test", "TXT"): ["v=spf1 include:slow1.test include:slow2.test include:slow3.test ip4:192.0.2.9"]}
    spf, dns, clock = evaluator(zone, slow={"slow1.test", "slow2.test", "slow3.test"}, SPF_TIME_BUDGET=5.0)
    start = clock.now
    result = spf.collect("s.test")
    assert clock.now - start <= 5.0
    assert [q[2] for q in dns.queries] == [3.0, 3.0, 2.0]  # min(DNS_QUERY_TIMEOUT, time left), then nothing
    assert result.entries == ("192.0.2.9",) and not result.complete


def test_a_failed_query_is_remembered_briefly():
    spf, dns, clock = evaluator({}, slow={"slow.test"})
    assert not spf.is_allowed("192.0.2.1", "slow.test")
    assert not spf.is_allowed("192.0.2.1", "slow.test")
    assert len(dns.queries) == 1
    clock.now += 31
    spf.is_allowed("192.0.2.1", "slow.test")
    assert len(dns.queries) == 2


def test_shared_seen_skips_what_an_earlier_domain_expanded():
    zone = {
        ("one.test", "TXT"): ["v=spf1 include:_spf.big.test ip4:192.0.2.1"],
        ("two.test", "TXT"): ["v=spf1 include:_spf.big.test ip4:192.0.2.1 ip4:192.0.2.2"],
        ("_spf.big.test", "TXT"): ["v=spf1 ip4:198.51.100.0/24"],
    }
    spf, _, _ = evaluator(zone)
    seen = Seen()
    assert spf.collect("one.test", seen).entries == ("192.0.2.1", "198.51.100.0/24")
    assert spf.collect("two.test", seen).entries == ("192.0.2.2",)
    assert seen.spf_queried("_spf.big.test") and not seen.spf_queried("three.test")


def test_nesting_depth_is_bounded_whatever_the_lookup_limit():
    chain = {
        (f"c{i}.test", "TXT"): [f"v=spf1 ip4:10.0.{i // 250}.{i % 250} include:c{i + 1}.test"] for i in range(3000)
    }
    spf, dns, _ = evaluator(chain, SPF_MAX_DNS_QUERIES=100000)
    result = spf.collect("c0.test")
    assert len(result.entries) == 51 and not result.complete

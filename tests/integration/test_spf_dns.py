"""SpfEvaluator against a real DNS server (dnsmasq, zone in tests/helpers/dnsmasq.py)."""

from __future__ import annotations

import time

import pytest

from apd import settings as settings_module
from apd.spf import Seen, SpfEvaluator

pytestmark = pytest.mark.servers


def evaluator(dns_server, **overrides) -> SpfEvaluator:
    values = {"DNS_NAMESERVERS": [dns_server.nameserver], "DNS_QUERY_TIMEOUT": 1.0, "SPF_TIME_BUDGET": 3.0}
    values.update(overrides)
    return SpfEvaluator(settings_module.defaults().replace(**values))


@pytest.mark.parametrize(
    "domain, client, allowed",
    [
        ("ip4.spf.test", "192.0.2.44", True),
        ("ip4.spf.test", "192.0.2.45", False),
        ("ip4.spf.test", "192.0.2.200", True),  # a /25 without '.0/': counts (DIFFERENCES 9)
        ("ip6.spf.test", "2001:db8:1:ffff::1", True),
        ("ip6.spf.test", "2001:db8:2::5", True),
        ("ip6.spf.test", "2001:db8:2::6", False),
        ("include.spf.test", "192.0.2.15", True),
        ("include.spf.test", "192.0.2.16", False),
        ("redirect.spf.test", "198.51.100.7", True),
        ("a.spf.test", "192.0.2.20", True),
        ("a.spf.test", "192.0.2.21", False),
        ("a24.spf.test", "203.0.113.250", True),
        ("a24.spf.test", "203.0.114.1", False),
        ("ahost.spf.test", "203.0.113.33", True),  # a:host/28 -> 203.0.113.32/28
        ("ahost.spf.test", "203.0.113.50", False),
        ("mx.spf.test", "192.0.2.30", True),
        ("mx.spf.test", "2001:db8:30::1", False),  # A/MX hosts give IPv4 only (AAAA never queried)
        ("mx24.spf.test", "203.0.113.1", True),
        ("mx24.spf.test", "203.0.112.1", False),
        ("ptr.spf.test", "192.0.2.1", False),  # ptr becomes '@domain' data, never an IP match
        ("quals.spf.test", "192.0.2.50", False),  # -ip4
        ("quals.spf.test", "192.0.2.51", False),  # ~ip4
        ("quals.spf.test", "192.0.2.52", False),  # ?ip4
        ("quals.spf.test", "192.0.2.53", True),  # +ip4
        ("multi.spf.test", "192.0.2.54", True),
        ("loop.spf.test", "192.0.2.60", True),
        ("loop.spf.test", "192.0.2.99", False),
        ("self.spf.test", "192.0.2.61", True),
        ("nospf.spf.test", "192.0.2.70", False),  # no SPF: is_allowed has no MX fallback
        ("nx.spf.test", "192.0.2.70", False),
        ("deep.spf.test", "10.0.20.1", True),  # 20 lookups after the first TXT
        ("deep.spf.test", "10.0.21.1", False),  # the 21st include is over SPF_MAX_DNS_QUERIES
    ],
)
def test_is_allowed(dns_server, domain, client, allowed):
    assert evaluator(dns_server).is_allowed(client, domain) is allowed


def test_collect_entries(dns_server):
    spf = evaluator(dns_server)
    assert spf.collect("ptr.spf.test").entries == ("@ptr.spf.test", "@other.test")
    assert spf.collect("mx24.spf.test").entries == ("203.0.113.0/24",)
    result = spf.collect("quals.spf.test")
    assert result.entries == ("192.0.2.53",) and result.spf_found and result.complete


def test_collect_without_spf_uses_the_ipv4_addresses_of_the_mx_hosts(dns_server):
    result = evaluator(dns_server).collect("nospf.spf.test")
    assert not result.spf_found
    assert sorted(result.entries) == ["192.0.2.70", "192.0.2.71", "192.0.2.72"]


def test_collect_nxdomain_gives_nothing(dns_server):
    result = evaluator(dns_server).collect("nx.spf.test")
    assert (result.spf_found, result.entries) == (False, ())


def test_loop_terminates_with_each_record_expanded_once(dns_server):
    result = evaluator(dns_server).collect("loop.spf.test")
    assert result.entries == ("192.0.2.60",) and result.complete


def test_too_many_lookups_is_cut_at_the_limit(dns_server):
    result = evaluator(dns_server, SPF_MAX_DNS_QUERIES=5).collect("deep.spf.test")
    assert result.entries == tuple(f"10.0.{n}.0/24" for n in range(6))
    assert not result.complete


def test_slow_record_midway_is_skipped_within_the_budget(dns_server):
    spf = evaluator(dns_server, DNS_QUERY_TIMEOUT=0.5, SPF_TIME_BUDGET=3.0)
    start = time.monotonic()
    result = spf.collect("midway.spf.test")
    elapsed = time.monotonic() - start
    assert result.entries == ("192.0.2.80", "192.0.2.81")  # the record after the slow one still counts
    assert not result.complete
    assert 0.4 < elapsed < 1.5


@pytest.mark.parametrize("budget", [1.0, 2.0])
def test_slow_records_never_exceed_the_time_budget(dns_server, budget):
    spf = evaluator(dns_server, DNS_QUERY_TIMEOUT=0.8, SPF_TIME_BUDGET=budget)
    start = time.monotonic()
    assert spf.is_allowed("192.0.2.90", "slowchain.spf.test")  # direct entries are matched first
    assert time.monotonic() - start < 0.2
    start = time.monotonic()
    assert not spf.is_allowed("192.0.2.91", "slowchain.spf.test")  # walks into 5 slow includes
    assert budget - 0.1 < time.monotonic() - start < budget + 0.8  # 5 slow includes would take 4 s


def test_black_hole_nameserver_costs_at_most_the_budget(dns_server):
    spf = SpfEvaluator(
        settings_module.defaults().replace(
            DNS_NAMESERVERS=[dns_server.black_hole], DNS_QUERY_TIMEOUT=3.0, SPF_TIME_BUDGET=1.0
        )
    )
    start = time.monotonic()
    assert not spf.is_allowed("192.0.2.1", "ip4.spf.test")
    assert spf.collect("ip4.spf.test").entries == ()
    assert time.monotonic() - start < 2 * 1.0 + 0.5


def test_answers_are_cached_for_the_worker(dns_server):
    spf = evaluator(dns_server)
    assert spf.is_allowed("192.0.2.15", "include.spf.test")
    assert len(spf.cache) == 2  # include.spf.test and _inc.spf.test TXT
    # With the nameserver gone, the cached answers still decide.
    spf._query = lambda name, rdtype, lifetime: pytest.fail(f"unexpected query {rdtype} {name}")
    assert spf.is_allowed("192.0.2.15", "include.spf.test")


def test_shared_seen_across_domains(dns_server):
    spf, seen = evaluator(dns_server), Seen()
    one = spf.collect("wl-one.test", seen)
    assert one.entries == ("192.0.2.101", "@wl-one.test", "198.51.100.0/24", "2001:db8:100::/48", "198.51.100.200")
    assert seen.spf_queried("_spf.wl-big.test")
    assert spf.collect("wl-two.test", seen).entries == ("192.0.2.102",)


def test_names_outside_the_test_zone_never_reach_the_system_resolver(dns_server):
    # dnsmasq has no upstream: REFUSED, which is a failure, answered at once
    spf = evaluator(dns_server)
    start = time.monotonic()
    assert not spf.is_allowed("192.0.2.1", "example.com")
    assert time.monotonic() - start < 0.5

"""The DNS metrics of a worker's SPF and senderscore lookups against a real DNS server (dnsmasq,
zone in tests/helpers/dnsmasq.py): queries by outcome, and evaluations cut short by the budget."""

from __future__ import annotations

import pytest

from apd import metrics
from apd import settings as settings_module
from apd.metrics.recorder import NullRecorder, PrometheusRecorder
from apd.spf import SpfEvaluator

pytestmark = pytest.mark.servers


@pytest.fixture
def recorder():
    recorder = PrometheusRecorder()
    metrics.install(recorder)
    yield recorder
    metrics.install(NullRecorder())


def counts(recorder: PrometheusRecorder) -> dict[str, float]:
    found = {}
    for family in recorder.registry.collect():
        for sample in family.samples:
            if sample.name == "apd_dns_queries_total":
                found[sample.labels["result"]] = sample.value
            elif sample.name == "apd_spf_budget_exhausted_total":
                found["budget exhausted"] = sample.value
    return found


def evaluator(dns_server, **overrides) -> SpfEvaluator:
    values = {"DNS_NAMESERVERS": [dns_server.nameserver], "DNS_QUERY_TIMEOUT": 1.0, "SPF_TIME_BUDGET": 3.0}
    return SpfEvaluator(settings_module.defaults().replace(**{**values, **overrides}))


def test_queries_by_outcome(dns_server, recorder):
    spf = evaluator(dns_server)
    assert spf.collect("include.spf.test").entries == ("192.0.2.0/28",)  # two TXT answers
    assert spf.collect("nx.spf.test").entries == ()  # NXDOMAIN for TXT, then for MX (no SPF: its MX hosts)
    assert spf.collect("include.spf.test").entries == ("192.0.2.0/28",)  # cached: no query
    assert counts(recorder) == {"answer": 2.0, "nxdomain": 2.0, "budget exhausted": 0.0}


def test_timeouts_and_the_budget_used_up_once_per_evaluation(dns_server, recorder):
    spf = evaluator(dns_server, DNS_QUERY_TIMEOUT=0.4, SPF_TIME_BUDGET=1.0)
    assert not spf.is_allowed("192.0.2.91", "slowchain.spf.test")  # 5 slow includes: 2 fit the budget
    got = counts(recorder)
    assert got["answer"] == 1 and got["budget exhausted"] == 1
    assert 2 <= got["timeout"] <= 3, got


def test_a_timeout_within_the_budget_is_no_exhaustion(dns_server, recorder):
    spf = evaluator(dns_server, DNS_QUERY_TIMEOUT=0.4, SPF_TIME_BUDGET=3.0)
    assert spf.collect("midway.spf.test").entries == ("192.0.2.80", "192.0.2.81")
    assert counts(recorder) == {"answer": 2.0, "timeout": 1.0, "budget exhausted": 0.0}

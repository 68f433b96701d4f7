"""GREYLISTING_BYPASS_SPF through a real apd and a real DNS server (dnsmasq, tests/helpers/dnsmasq.py)."""

from __future__ import annotations

import time

import pytest

from tests.helpers.policy_client import rcpt

GREY = "451 4.7.1 Intentional policy rejection, please try again later"
GLOBAL_ON = "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"


def start(apd_factory, dns_server, **settings):
    import sqlite3

    settings.setdefault("GREYLISTING_BYPASS_SPF", True)
    apd = apd_factory(plugins=["greylisting"], DNS_NAMESERVERS=[dns_server.nameserver], **settings)
    apd.wait_for_log("Starting apd")
    sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None).execute(GLOBAL_ON)
    return apd


@pytest.fixture(scope="module")
def shared_apd(tmp_path_factory, dns_server):
    """One apd for the table below: every case uses its own (sender, client) pair."""
    import sqlite3

    from tests.helpers.apd_process import ApdProcess

    apd = ApdProcess(
        tmp_path_factory.mktemp("greylisting-spf"),
        plugins=["greylisting"],
        DNS_NAMESERVERS=[dns_server.nameserver],
        GREYLISTING_BYPASS_SPF=True,
    ).start()
    apd.wait_for_log("Starting apd")
    sqlite3.connect(apd.settings["sqlite_db_path"], isolation_level=None).execute(GLOBAL_ON)
    yield apd
    apd.stop()


@pytest.mark.parametrize(
    "sender, client, expected",
    [
        ("a@ip4.spf.test", "192.0.2.44", "DUNNO"),  # ip4: address
        ("a@ip4.spf.test", "192.0.2.200", "DUNNO"),  # ip4:192.0.2.128/25, any prefix (DIFFERENCES 9)
        ("a@ip4.spf.test", "192.0.2.45", GREY),
        ("a@ip6.spf.test", "2001:db8:1::9", "DUNNO"),  # ip6 network
        ("a@include.spf.test", "192.0.2.3", "DUNNO"),  # include
        ("a@nx.spf.test", "192.0.2.44", GREY),  # no such domain
        ("", "192.0.2.44", GREY),  # null sender: nothing to look up
    ],
)
def test_spf_bypass(shared_apd, sender, client, expected):
    apd = shared_apd
    with apd.client() as c:
        assert c.ask(**rcpt(sender=sender, client_address=client)) == expected
    if expected == "DUNNO":
        apd.wait_for_log(f"[{client}] Bypass greylisting due to SPF match ({sender.split('@')[1]})")


def test_no_spf_lookup_for_the_srs_domain_or_when_disabled(apd_factory, dns_server):
    apd = start(apd_factory, dns_server, srs_domain="ip4.spf.test")
    with apd.client() as c:
        assert c.ask(**rcpt(sender="srs0=x@ip4.spf.test", client_address="192.0.2.44")) == GREY
    apd2 = start(apd_factory, dns_server, GREYLISTING_BYPASS_SPF=False)
    with apd2.client() as c:
        assert c.ask(**rcpt(sender="a@ip4.spf.test", client_address="192.0.2.44")) == GREY


def test_slow_spf_is_bounded_by_the_time_budget(apd_factory, dns_server):
    apd = start(apd_factory, dns_server, SPF_TIME_BUDGET=1.0, DNS_QUERY_TIMEOUT=0.5)
    with apd.client(timeout=30) as c:
        started = time.monotonic()
        assert c.ask(**rcpt(sender="a@slowchain.spf.test", client_address="192.0.2.91")) == GREY
        assert time.monotonic() - started < 5

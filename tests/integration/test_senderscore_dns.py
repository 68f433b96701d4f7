"""senderscore against real DNS (dnsmasq serving score.senderscore.com records,
tests/helpers/dnsmasq.py) with its cache on SQLite, MariaDB and PostgreSQL (apd's DDL and
iRedAPD's own schema), and through a real apd subprocess."""

from __future__ import annotations

import pytest

from apd import replies
from apd.checks.senderscore import Senderscore
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.store.cleanup import delete_in_batches, expiries
from tests.helpers.policy_client import rcpt

pytestmark = pytest.mark.servers

NOW = 1_800_000_000
DAY = 86400
BAD = replies.REJECT_LOW_SENDER_SCORE


class Counted:
    """The check's real DNS path, with the names it asked for."""

    def __init__(self, check):
        self.names: list[str] = []
        self._query = check.query

    def __call__(self, name):
        self.names.append(name)
        return self._query(name)


def make(store, nameserver, **settings):
    settings = {"DNS_NAMESERVERS": [nameserver], "DNS_QUERY_TIMEOUT": 1.0, **settings}
    check = Senderscore(store.settings.replace(**settings), store)
    counted = Counted(check)
    check.query = counted
    return check, counted


def ask(check, store, client, now=NOW, **attrs):
    fields = {"protocol_state": "RCPT", "client_address": client, "sender": "a@example.org"}
    fields.update(attrs)
    request = PolicyRequest.build(fields)
    return check.check(request, RequestContext(request, store, TrustedClients(()), now))


def cached(store, client):
    return store.iredapd.query("SELECT score, time FROM senderscore_cache WHERE client_address = %s", (client,))


def test_scores_from_dns_cached_and_expired(schema_store, dns_server):
    store = schema_store
    check, dns = make(store, dns_server.nameserver)
    assert ask(check, store, "203.0.113.1") == BAD + "203.0.113.1"  # score 12
    assert ask(check, store, "203.0.113.4") == BAD + "203.0.113.4"  # 30: at the limit
    assert ask(check, store, "203.0.113.2") is None  # 87
    assert ask(check, store, "203.0.113.3") is None  # NXDOMAIN: 100
    assert cached(store, "203.0.113.1") == [(12, NOW)]
    assert cached(store, "203.0.113.3") == [(100, NOW)]
    assert len(dns.names) == 4
    # cache hits: the same answers, no DNS query
    assert ask(check, store, "203.0.113.1", now=NOW + DAY) == BAD + "203.0.113.1"
    assert ask(check, store, "203.0.113.3", now=NOW + DAY) is None
    assert len(dns.names) == 4
    # cleanup_db removes rows older than SENDERSCORE_CACHE_DAYS; the next request asks DNS again
    later = NOW + 3 * DAY
    for expiry in expiries(later, store.settings.SENDERSCORE_CACHE_DAYS, 7):
        if expiry.table == "senderscore_cache":
            assert list(delete_in_batches(store.iredapd, expiry, 100))[-1] == 4
    assert store.iredapd.query("SELECT COUNT(*) FROM senderscore_cache") == [(0,)]
    assert ask(check, store, "203.0.113.1", now=later) == BAD + "203.0.113.1"
    assert dns.names[4:] == ["1.113.0.203.score.senderscore.com"]
    assert cached(store, "203.0.113.1") == [(12, later)]


def test_stale_row_replaced_without_cleanup(schema_store, dns_server):
    store = schema_store
    store.iredapd.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES (%s, %s, %s)", ("203.0.113.2", 1, NOW)
    )
    check, dns = make(store, dns_server.nameserver)
    assert ask(check, store, "203.0.113.2", now=NOW + DAY) == BAD + "203.0.113.2"  # fresh: cached 1
    assert dns.names == []
    assert ask(check, store, "203.0.113.2", now=NOW + 3 * DAY) is None  # stale: DNS says 87
    assert cached(store, "203.0.113.2") == [(87, NOW + 3 * DAY)]


def test_timeout_is_100_and_not_cached(schema_store, dns_server):
    store = schema_store
    check, dns = make(store, dns_server.black_hole, DNS_QUERY_TIMEOUT=0.3)
    assert ask(check, store, "203.0.113.1") is None
    assert dns.names == ["1.113.0.203.score.senderscore.com"]
    assert cached(store, "203.0.113.1") == []


@pytest.mark.parametrize(
    "client", ["203.0.113.1' OR '1'='1", "203.0.113.1;DROP TABLE senderscore_cache", "203.0.113.1\n", "x" * 300]
)
def test_injection_in_client_address_changes_nothing(sql_backend, dns_server, client):
    store = sql_backend
    store.iredapd.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES (%s, %s, %s)", ("203.0.113.9", 1, NOW)
    )
    check, dns = make(store, dns_server.nameserver)
    assert ask(check, store, client) is None
    assert dns.names == []
    assert store.iredapd.query("SELECT client_address, score FROM senderscore_cache") == [("203.0.113.9", 1)]


def test_through_apd(apd_factory, dns_server):
    settings = {"plugins": ["senderscore"], "DNS_NAMESERVERS": [dns_server.nameserver], "workers": 1}
    apd = apd_factory(**settings)
    with apd.client() as client:
        assert client.ask(**rcpt(client_address="203.0.113.1")) == BAD + "203.0.113.1"
        assert client.ask(**rcpt(client_address="203.0.113.2")) == "DUNNO"
        assert client.ask(**rcpt(client_address="203.0.113.1", sasl_username="user@example.com")) == "DUNNO"
    apd.stop()
    assert "[203.0.113.1] [example.net] senderscore: 12 [REJECT (<= 30)]" in apd.log()
    # the same database, DNS now unreachable: the score comes from the cache
    settings.update(sqlite_db_path=apd.settings["sqlite_db_path"], DNS_NAMESERVERS=[dns_server.black_hole])
    again = apd_factory(**settings)
    with again.client() as client:
        assert client.ask(**rcpt(client_address="203.0.113.1")) == BAD + "203.0.113.1"
    assert "[203.0.113.1] [example.net] senderscore: 12 (cache matched) [REJECT (<= 30)]" in again.log()


def test_statements_per_request(schema_store, dns_server):
    """A cached client costs one statement; a new one a statement, a DNS query and a write."""
    store = schema_store
    statements: list[str] = []
    run = store.iredapd._run
    store.iredapd._run = lambda sql, *args, **kwargs: statements.append(sql) or run(sql, *args, **kwargs)
    check, dns = make(store, dns_server.nameserver)
    assert ask(check, store, "203.0.113.2") is None
    assert len(statements) == 2 and len(dns.names) == 1
    assert ask(check, store, "203.0.113.2") is None
    assert len(statements) == 3 and len(dns.names) == 1

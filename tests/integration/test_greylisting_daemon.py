"""The greylisting check through real apd subprocesses on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from tests.helpers.policy_client import PolicyClient, rcpt
from tests.integration.greylisting_backends import BACKENDS, IREDMAIL_BACKENDS, open_backend

GREY = "451 4.7.1 Intentional policy rejection, please try again later"
GLOBAL_ON = "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"


@pytest.fixture(params=BACKENDS + IREDMAIL_BACKENDS)
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    yield b
    b.close()


def start(apd_factory, backend, **settings):
    apd = apd_factory(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False, **backend.values, **settings)
    apd.wait_for_log("Starting apd")  # SQLite: the tables exist (the port is bound before they are created)
    return apd


def test_first_attempt_greylisted_then_retry_after_block_passes(apd_factory, backend):
    apd = start(apd_factory, backend)
    db = backend.db
    db.execute(GLOBAL_ON)
    with apd.client() as client:
        assert client.ask(**rcpt()) == GREY
        assert client.ask(**rcpt()) == GREY  # too soon
    assert db.query("SELECT blocked_count, passed FROM greylisting_tracking") == [(2, 0)]
    # expire the block in the database instead of sleeping
    db.execute("UPDATE greylisting_tracking SET init_time = init_time - 1200, block_expired = block_expired - 1200")
    with apd.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"
        assert client.ask(**rcpt(sender="another@example.org")) == "DUNNO"  # passed client
    assert db.query("SELECT passed FROM greylisting_tracking") == [(1,)]
    assert "Client has not been seen before, greylisted (example.net)." in apd.log()


def test_plain_sql_changes_apply_to_the_very_next_request(apd_factory, backend):
    apd = start(apd_factory, backend)
    db = backend.db
    with apd.client() as client:
        assert client.ask(**rcpt()) == "DUNNO"  # no settings row: off
        db.execute(GLOBAL_ON)
        assert client.ask(**rcpt()) == GREY
        db.execute("INSERT INTO greylisting_whitelists (account, sender, comment) VALUES ('@.', '192.0.2.0/24', '')")
        assert client.ask(**rcpt()) == "DUNNO"
        db.execute("DELETE FROM greylisting_whitelists")
        assert client.ask(**rcpt()) == GREY
        db.execute(
            "INSERT INTO greylisting_whitelist_domain_spf (account, sender, comment) VALUES ('@.', '192.0.2.10', 'x')"
        )
        assert client.ask(**rcpt()) == "DUNNO"
        db.execute("DELETE FROM greylisting_whitelist_domain_spf")
        db.execute("UPDATE greylisting SET active = 0")
        assert client.ask(**rcpt()) == "DUNNO"


def test_network_tracking_through_the_daemon(apd_factory, backend):
    apd = start(apd_factory, backend, GREYLISTING_TRACK_IPV4_PREFIX=24)
    backend.db.execute(GLOBAL_ON)
    with apd.client() as client:
        assert client.ask(**rcpt(client_address="192.0.2.10")) == GREY
        backend.db.execute("UPDATE greylisting_tracking SET block_expired = block_expired - 1200")
        assert client.ask(**rcpt(client_address="192.0.2.77")) == "DUNNO"
    assert backend.db.query("SELECT client_address, passed FROM greylisting_tracking") == [("192.0.2.0/24", 1)]


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_two_instances_one_new_triplet_200_times_at_once(apd_factory, request, tmp_path, kind):
    """Two hosts (apd instances) on one MariaDB (or PostgreSQL) see the same new triplet at the same moment."""
    backend = open_backend(request, tmp_path, kind)
    backend.db.execute(GLOBAL_ON)
    apds = [start(apd_factory, backend, workers=4), start(apd_factory, backend, workers=4)]
    clients = [PolicyClient(apds[i % 2].host, apds[i % 2].port, timeout=60) for i in range(200)]
    barrier = threading.Barrier(len(clients))
    replies: list[str] = []

    def ask(client: PolicyClient) -> None:
        barrier.wait()
        replies.append(client.ask(**rcpt()))

    threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert replies == [GREY] * 200
    assert backend.db.query("SELECT blocked_count, passed FROM greylisting_tracking") == [(200, 0)]
    for apd in apds:
        log = apd.log()
        assert "ERROR" not in log and "Traceback" not in log and "WARNING <!>" not in log, log
    backend.close()

"""A worker stuck in a slow SPF evaluation does not slow down requests on the other workers.

Run twice: with a test-only check that only asks SpfEvaluator.is_allowed (custom_spf_probe), and
with the real greylisting check (GREYLISTING_BYPASS_SPF, greylisting enabled for everyone).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.policy_client import rcpt

pytestmark = pytest.mark.servers

CUSTOM_CHECKS = Path(__file__).resolve().parents[1] / "data" / "custom_checks"
BUDGET = 3.0
GREYLISTED = "451 4.7.1 Intentional policy rejection, please try again later"

# check -> (reply for a client listed in the sender's SPF, reply for the slow domain)
CASES = {
    "custom_spf_probe": ("OK client listed in SPF", "DUNNO"),
    "greylisting": ("DUNNO", GREYLISTED),
}


@pytest.mark.parametrize("check", sorted(CASES))
def test_slow_spf_holds_one_worker_for_at_most_the_budget(apd_factory, dns_server, check):
    listed_reply, slow_reply = CASES[check]
    apd = apd_factory(
        workers=2,
        plugins=[check],
        CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
        DNS_NAMESERVERS=[dns_server.nameserver],
        DNS_QUERY_TIMEOUT=1.0,
        SPF_TIME_BUDGET=BUDGET,
        LOG_SMTP_SESSIONS=False,
    )
    if check == "greylisting":  # enable it for everyone, as iRedMail's enable_global_greylisting.sql does
        with sqlite3.connect(apd.settings["sqlite_db_path"]) as db:
            db.execute(
                "INSERT INTO greylisting (account, priority, sender, sender_priority, active)"
                " VALUES ('@.', 0, '@.', 0, 1)"
            )
    with apd.client() as warm:  # the fast path works (and its DNS answer is cached) before the slow request
        assert warm.ask(**rcpt(sender="a@probe-fast.spf.test", client_address="192.0.2.5")) == listed_reply

    slow: dict[str, object] = {}

    def slow_request() -> None:
        with apd.client(timeout=30) as client:
            started = time.monotonic()
            slow["reply"] = client.ask(**rcpt(sender="a@slowchain.spf.test", client_address="192.0.2.91"))
            slow["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)  # the slow request is now holding its worker

    latencies = []
    with apd.client() as client:
        while thread.is_alive():
            started = time.monotonic()
            reply = client.ask(**rcpt(sender="b@probe-fast.spf.test", client_address="192.0.2.6"))
            latencies.append(time.monotonic() - started)
            assert reply == listed_reply
    thread.join()

    assert slow["reply"] == slow_reply
    assert BUDGET - 0.2 < slow["seconds"] < BUDGET + 0.5
    assert len(latencies) > 50
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    assert p99 < 0.05, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} requests"

"""The bench's load generator against the null policy server, briefly, so the bench code cannot rot."""

from bench.loadgen import run_load
from bench.measure import payload
from bench.servers import NullServer


def test_load_generator_counts_replies_from_null_server():
    with NullServer(workers=1) as server:
        persistent = run_load(server.address, 4, payload(), duration=0.5, warmup=0.1, processes=1)
        churn = run_load(server.address, 2, payload(), duration=0.3, warmup=0.1, churn=True, processes=1)
    assert persistent.errors == 0
    assert persistent.replies > 100
    assert persistent.first_reply == b"action=DUNNO"
    assert len(persistent.latencies_ns) == persistent.replies
    assert 0 < persistent.percentile(0.5) <= persistent.percentile(0.99)
    assert churn.errors == 0
    assert churn.replies > 10

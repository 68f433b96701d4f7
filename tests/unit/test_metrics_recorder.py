"""PrometheusRecorder counts requests in memory and writes them at ``flush``: the written series
equal what prometheus_client's own ``inc``/``observe`` per request would give, with labels
mapped to their fixed sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram

from apd.metrics.recorder import LATENCY_BUCKETS, NullRecorder, PrometheusRecorder

SECONDS = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.04, 1.0, 7.5, 12.0, 0.0]


def samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(name) and not sample.name.endswith("_created")
    }


def test_requests_are_written_at_the_flush_with_their_labels() -> None:
    recorder = PrometheusRecorder()
    for _ in range(3):
        recorder.request("RCPT", "greylisting", "451 4.7.1 Intentional policy rejection", 0.002)
    recorder.request("RCPT", "", "DUNNO", 0.001)
    recorder.request("rcpt", "", "DUNNO", 0.001)
    recorder.request("FOO", "throttle", "FROBNICATE user@example.com", 0.001)
    assert samples(recorder.registry, "apd_requests_total") == {}  # nothing written yet
    recorder.flush()
    assert samples(recorder.registry, "apd_requests_total") == {
        ("apd_requests_total", (("action", "451"), ("check", "greylisting"), ("state", "RCPT"))): 3.0,
        ("apd_requests_total", (("action", "DUNNO"), ("check", "none"), ("state", "RCPT"))): 2.0,
        ("apd_requests_total", (("action", "other"), ("check", "throttle"), ("state", "other"))): 1.0,
    }
    recorder.request("RCPT", "", "DUNNO", 0.001)
    recorder.flush()
    recorder.flush()  # nothing new: nothing added twice
    assert (
        samples(recorder.registry, "apd_requests_total")[
            ("apd_requests_total", (("action", "DUNNO"), ("check", "none"), ("state", "RCPT")))
        ]
        == 3.0
    )


def test_flushed_histograms_equal_observing_each_value() -> None:
    recorder = PrometheusRecorder()
    expected = CollectorRegistry()
    overall = Histogram("apd_request_duration_seconds", "", buckets=LATENCY_BUCKETS, registry=expected)
    per_check = Histogram("apd_check_duration_seconds", "", ("check",), buckets=LATENCY_BUCKETS, registry=expected)
    for index, seconds in enumerate(SECONDS):
        recorder.request("RCPT", "", "DUNNO", seconds)
        overall.observe(seconds)
        check = ("greylisting", "throttle")[index % 2]
        recorder.check_time(check, seconds / 2)
        per_check.labels(check).observe(seconds / 2)
        if index == 4:
            recorder.flush()  # in two flushes: the second adds to the first
    recorder.flush()
    for name in ("apd_request_duration_seconds", "apd_check_duration_seconds"):
        got, wanted = samples(recorder.registry, name), samples(expected, name)
        assert got.keys() == wanted.keys() and len(got) > 10
        for key, value in wanted.items():
            assert abs(got[key] - value) < 1e-9, key
    count = ("apd_request_duration_seconds_count", ())
    assert samples(recorder.registry, "apd_request_duration_seconds")[count] == len(SECONDS)


def test_the_null_recorder_counts_nothing() -> None:
    recorder = NullRecorder()
    assert not recorder.enabled and PrometheusRecorder.enabled
    assert recorder.request("RCPT", "", "DUNNO", 0.1) is None and recorder.flush() is None


def test_with_metrics_off_prometheus_client_is_never_imported() -> None:
    """Not by any apd module (the master imports them all before dropping root, apd/preload.py):
    multiprocess mode must be chosen before prometheus_client's first import, and off costs nothing."""
    code = (
        "import sys; from apd.preload import preload_modules; preload_modules(); from apd import metrics;"
        " print(metrics.recorder().enabled, 'prometheus_client' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr

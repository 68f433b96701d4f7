"""What apd counts, behind one interface: ``NullRecorder`` (metrics off: every call does nothing)
and ``PrometheusRecorder`` (prometheus_client in multiprocess mode).

Each request is counted in plain dicts and lists, and ``flush`` (the worker calls it where it
writes its held decision lines: at least every 0.1 s while busy, and when idle) adds them to
prometheus_client's files: one file write per series and flush instead of several per request
(a multiprocess write takes a lock, checks the pid and packs into an mmap: ~2-5 µs each).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from apd.metrics.labels import action_verb, check_label, state_label

# Policy answers take from well under a millisecond (no database) to seconds (DNS, a slow database).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Recorder:
    """The calls the rest of apd makes; this base class does nothing (metrics off)."""

    enabled = False

    def request(self, state: str, check: str, action: str, seconds: float) -> None: ...

    def check_time(self, check: str, seconds: float) -> None: ...

    def store_error(self, database: str, kind: str) -> None: ...

    def failsafe(self, database: str) -> None: ...

    def dns_query(self, result: str) -> None: ...

    def spf_budget_exhausted(self) -> None: ...

    def connections(self, live: int, idle: int) -> None: ...

    def drop(self, reason: str) -> None: ...

    def workers(self, count: int) -> None: ...

    def worker_restart(self) -> None: ...

    def flush(self) -> None: ...


class NullRecorder(Recorder):
    pass


class PendingObservations:
    """Observations of one histogram series not yet written: a count per bucket and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds  # the histogram's upper bounds, +Inf last
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # the first bucket with le >= seconds
        self.total += seconds

    def write_to(self, series: Any) -> None:
        """Add them to a prometheus_client histogram series. Its own ``observe`` takes one value;
        ``_buckets`` (per-bucket values, made cumulative when collected) and ``_sum`` are the
        values it increments (tests/unit/test_metrics_recorder.py compares the two ways)."""
        if not any(self.counts):
            return
        for bucket, count in zip(series._buckets, self.counts):
            if count:
                bucket.inc(count)
        series._sum.inc(self.total)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class PrometheusRecorder(Recorder):
    """One set of metrics per process, in a registry of its own; in multiprocess mode the values
    go to the run's files whatever the registry, and the master's collector reads them all."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = self.registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=registry)

        self._requests = counter(
            "apd_requests_total",
            "Policy requests answered, by protocol state, deciding check and verb.",
            ("state", "check", "action"),
        )
        self._request_seconds = Histogram(
            "apd_request_duration_seconds",
            "Time to decide one policy request.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._check_seconds = Histogram(
            "apd_check_duration_seconds",
            "Time one check took on one request.",
            ("check",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._store_errors = counter(
            "apd_store_errors_total", "Database errors, by database and kind.", ("database", "kind")
        )
        self._failsafe = counter(
            "apd_failsafe_answers_total",
            "Answers given by STORE_FAILURE_ACTION while a database was down.",
            ("database",),
        )
        self._dns = counter("apd_dns_queries_total", "DNS queries sent, by outcome.", ("result",))
        self._spf_budget = counter("apd_spf_budget_exhausted_total", "SPF evaluations cut short by SPF_TIME_BUDGET.")
        self._connections = Gauge(
            "apd_connections",
            "Client connections of a worker: all open ones, and those idle between requests.",
            ("state",),
            multiprocess_mode="liveall",
            registry=registry,
        )
        self._drops = counter(
            "apd_connection_drops_total",
            "Connections closed by apd, by reason (protocol breaches, timeouts).",
            ("reason",),
        )
        self._workers = Gauge(
            "apd_workers", "Worker processes running.", multiprocess_mode="livemax", registry=registry
        )
        self._restarts = counter("apd_worker_restarts_total", "Workers that died or hung and were replaced.")
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        # Not yet written: requests by their raw (state, check, action), mapped to labels at the flush
        self._pending_requests: dict[tuple[str, str, str], int] = {}
        self._pending_request_seconds = PendingObservations(self._bounds)
        self._pending_check_seconds: dict[str, PendingObservations] = {}

    def request(self, state: str, check: str, action: str, seconds: float) -> None:
        key = (state, check, action)
        pending = self._pending_requests
        pending[key] = pending.get(key, 0) + 1
        self._pending_request_seconds.add(seconds)

    def check_time(self, check: str, seconds: float) -> None:
        pending = self._pending_check_seconds.get(check)
        if pending is None:
            pending = self._pending_check_seconds[check] = PendingObservations(self._bounds)
        pending.add(seconds)

    def flush(self) -> None:
        if self._pending_requests:
            requests, self._pending_requests = self._pending_requests, {}
            by_labels: dict[tuple[str, str, str], int] = {}
            for (state, check, action), count in requests.items():
                labels = (state_label(state), check_label(check), action_verb(action))
                by_labels[labels] = by_labels.get(labels, 0) + count
            for labels, count in by_labels.items():
                self._requests.labels(*labels).inc(count)
        self._pending_request_seconds.write_to(self._request_seconds)
        for check, pending in self._pending_check_seconds.items():
            if any(pending.counts):  # labels() only for a check that ran since the last flush
                pending.write_to(self._check_seconds.labels(check))

    def store_error(self, database: str, kind: str) -> None:
        self._store_errors.labels(database, kind).inc()

    def failsafe(self, database: str) -> None:
        self._failsafe.labels(database).inc()

    def dns_query(self, result: str) -> None:
        self._dns.labels(result).inc()

    def spf_budget_exhausted(self) -> None:
        self._spf_budget.inc()

    def connections(self, live: int, idle: int) -> None:
        self._connections.labels("open").set(live)
        self._connections.labels("idle").set(idle)

    def drop(self, reason: str) -> None:
        self._drops.labels(reason).inc()

    def workers(self, count: int) -> None:
        self._workers.set(count)

    def worker_restart(self) -> None:
        self._restarts.inc()

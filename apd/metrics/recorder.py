"""What apd counts, behind one interface: ``NullRecorder`` (metrics off: every call does nothing)
and ``PrometheusRecorder`` (prometheus_client in multiprocess mode)."""

from __future__ import annotations

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


class NullRecorder(Recorder):
    pass


class PrometheusRecorder(Recorder):
    """One set of metrics per process, in a registry of its own; in multiprocess mode the values
    go to the run's files whatever the registry, and the master's collector reads them all."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()

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

    def request(self, state: str, check: str, action: str, seconds: float) -> None:
        self._requests.labels(state_label(state), check_label(check), action_verb(action)).inc()
        self._request_seconds.observe(seconds)

    def check_time(self, check: str, seconds: float) -> None:
        self._check_seconds.labels(check).observe(seconds)

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

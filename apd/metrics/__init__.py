"""Prometheus metrics of a running apd, on their own listener (``METRICS_LISTEN``, off by default).

The workers count into prometheus_client's multiprocess files (a folder the master makes for
this run); the master serves ``GET /metrics`` from them (``exposition``) and marks a worker it
reaps as dead, so that the worker's live gauges leave the output while the totals it counted stay.

``recorder()`` is the process's recorder: the no-op ``NullRecorder`` unless ``install`` put a
``PrometheusRecorder`` there. It is process-wide as prometheus_client's own registry is; the hot
path (one request) holds its own reference, so that with metrics off it pays no lookup.
"""

from __future__ import annotations

from apd.metrics.recorder import NullRecorder, Recorder

_installed: list[Recorder] = [NullRecorder()]  # one element: the process's recorder


def recorder() -> Recorder:
    return _installed[0]


def install(new: Recorder) -> None:
    _installed[0] = new


__all__ = ["NullRecorder", "Recorder", "install", "recorder"]

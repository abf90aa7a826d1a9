"""Prometheus metrics of the HTTP service (``GET /metrics``), in a registry of their own per app.

Names (all prefixed ``retinaface_``):

* ``requests_total{route, status}``: answered requests by route (``/v1/detect``, ...) and HTTP status
* ``request_seconds{route}``: histogram of the time from the request's arrival to its answer, in seconds
* ``batch_size``: histogram of the images per ``detect_arrays`` call
* ``batch_seconds``: histogram of the time per ``detect_arrays`` call, in seconds
* ``queue_depth``: images submitted to the worker and not yet taken into a batch
* ``in_flight``: requests admitted and not yet answered (at most ``max_queue``)

A registry per app (not prometheus_client's global one) keeps two apps in one process apart (tests).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "retinaface"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The service's counters, histograms and gauges (see the module docstring)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{PREFIX}_requests", "Answered requests by route and HTTP status",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "Request latency, arrival to answer, seconds",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Images per detect_arrays call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram(f"{PREFIX}_batch_seconds", "Time per detect_arrays call, seconds",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Images waiting for the worker",
                                 registry=self.registry)
        self.in_flight = Gauge(f"{PREFIX}_in_flight", "Admitted requests not yet answered",
                               registry=self.registry)

    def answered(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        """Record one ``detect_arrays`` call of ``size`` images that took ``seconds``."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

"""Prometheus metrics of one app (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

__all__ = ["ServeMetrics"]

# Request latency buckets: sub-millisecond to the request timeout's order.
_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Request counts, latency histograms, batch sizes, engine time, model generation, process RSS."""

    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu seconds, fds
        self.requests = Counter(
            "mmrec_requests", "HTTP requests by route and status code", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mmrec_request_seconds", "Request latency by route", ["route"], buckets=_LATENCY, registry=self.registry
        )
        self.batch_size = Histogram(
            "mmrec_batch_size", "Queries per engine call", buckets=_BATCH, registry=self.registry
        )
        self.engine_seconds = Histogram(
            "mmrec_engine_seconds", "Seconds per engine call", buckets=_LATENCY, registry=self.registry
        )
        self.generation = Gauge("mmrec_model_generation", "Generation of the served snapshot", registry=self.registry)
        self.items = Gauge("mmrec_catalogue_items", "Items in the served catalogue", registry=self.registry)
        self.timeouts = Counter("mmrec_request_timeouts", "Requests that hit the timeout", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one engine call (called from the worker thread; prometheus_client is thread-safe)."""
        self.batch_size.observe(size)
        self.engine_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

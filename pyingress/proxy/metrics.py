"""Request metrics for the data plane, in a registry the caller owns."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from pyingress.model import ObjectRef

BUCKETS = Histogram.DEFAULT_BUCKETS
"""Upper bounds of the latency histogram (prometheus_client's defaults, ending in +Inf)."""
_LE = tuple("+Inf" if bound == float("inf") else repr(float(bound)) for bound in BUCKETS)


class _Latency:
    """The latency histogram of one Ingress and host: per-bucket counts and the sum."""

    __slots__ = ("counts", "created", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.created = time.time()


class _Series:
    """Requests of one Ingress, host and status, and the latency histogram they share."""

    __slots__ = ("count", "created", "latency")

    def __init__(self, latency: _Latency) -> None:
        self.count = 0
        self.latency = latency
        self.created = time.time()


class ProxyMetrics:
    """Request counts and a latency histogram, recorded in plain Python and exported on scrape.

    The proxy records one sample per request. Through ``prometheus_client`` that cost three
    locked increments and two label-set lookups, a measurable part of a request; here it is
    one dict lookup and three additions, and a collector turns the numbers into the same
    ``pyingress_requests_total`` and ``pyingress_request_duration_seconds`` series when
    ``/metrics`` is read. Everything runs on the event loop's thread.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._series: dict[tuple[ObjectRef | None, str, int], _Series] = {}
        self._latencies: dict[tuple[ObjectRef | None, str], _Latency] = {}
        self._connect_children: dict[str, Counter] = {}
        registry.register(_RequestCollector(self))
        self.connect_errors = Counter(
            "pyingress_upstream_connect_errors_total",
            "Failed connection attempts to upstream endpoints.",
            ["service"],
            registry=registry,
        )

    def observe(self, ingress: ObjectRef | None, host: str, status: int, seconds: float) -> None:
        """Record one answered request; ``ingress`` is None when no route matched."""
        series = self._series.get((ingress, host, status))
        if series is None:
            series = self._new_series(ingress, host, status)
        series.count += 1
        latency = series.latency
        latency.total += seconds
        latency.counts[bisect_left(BUCKETS, seconds)] += 1

    def _new_series(self, ingress: ObjectRef | None, host: str, status: int) -> _Series:
        latency = self._latencies.get((ingress, host))
        if latency is None:
            latency = self._latencies[(ingress, host)] = _Latency()
        series = self._series[(ingress, host, status)] = _Series(latency)
        return series

    def connect_error(self, service: str) -> None:
        counter = self._connect_children.get(service)
        if counter is None:
            counter = self._connect_children[service] = self.connect_errors.labels(service)
        counter.inc()

    def collect(self) -> Iterator[Metric]:
        """The request series as ``prometheus_client`` would have exported them."""
        requests = CounterMetricFamily(
            "pyingress_requests_total",
            "Requests answered by the proxy.",
            labels=["ingress", "host", "status"],
        )
        for (ingress, host, status), series in list(self._series.items()):
            name = ingress.namespaced_name if ingress is not None else ""
            labels = [name, host, str(status)]
            requests.add_metric(labels, float(series.count), created=series.created)
        yield requests
        duration = HistogramMetricFamily(
            "pyingress_request_duration_seconds",
            "Time from the request head to the end of the response.",
            labels=["ingress", "host"],
        )
        for (ingress, host), latency in list(self._latencies.items()):
            name = ingress.namespaced_name if ingress is not None else ""
            cumulative, buckets = 0, []
            for le, count in zip(_LE, latency.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            duration.add_metric([name, host], buckets, latency.total)
            created = {"ingress": name, "host": host}
            duration.samples.append(Sample(duration.name + "_created", created, latency.created))
        yield duration


class _RequestCollector:
    """Registers :meth:`ProxyMetrics.collect` without registering the metrics object itself."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()

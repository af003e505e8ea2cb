"""Request metrics for the data plane, in a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from pyingress.model import ObjectRef


class ProxyMetrics:
    """Counters and a latency histogram, with labelled children cached per label set.

    ``prometheus_client``'s ``.labels()`` costs a lock and a tuple build; the proxy records one
    sample per request, so the children are looked up once and kept in dicts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "pyingress_requests_total",
            "Requests answered by the proxy.",
            ["ingress", "host", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "pyingress_request_duration_seconds",
            "Time from the request head to the end of the response.",
            ["ingress", "host"],
            registry=registry,
        )
        self.connect_errors = Counter(
            "pyingress_upstream_connect_errors_total",
            "Failed connection attempts to upstream endpoints.",
            ["service"],
            registry=registry,
        )
        self._request_children: dict[tuple[ObjectRef | None, str, int], Counter] = {}
        self._duration_children: dict[tuple[ObjectRef | None, str], Histogram] = {}
        self._connect_children: dict[str, Counter] = {}

    def observe(self, ingress: ObjectRef | None, host: str, status: int, seconds: float) -> None:
        """Record one answered request; ``ingress`` is None when no route matched."""
        key = (ingress, host, status)
        counter = self._request_children.get(key)
        if counter is None:
            name = ingress.namespaced_name if ingress is not None else ""
            counter = self.requests.labels(name, host, str(status))
            self._request_children[key] = counter
        counter.inc()
        hkey = (ingress, host)
        histogram = self._duration_children.get(hkey)
        if histogram is None:
            name = ingress.namespaced_name if ingress is not None else ""
            histogram = self.duration.labels(name, host)
            self._duration_children[hkey] = histogram
        histogram.observe(seconds)

    def connect_error(self, service: str) -> None:
        counter = self._connect_children.get(service)
        if counter is None:
            counter = self._connect_children[service] = self.connect_errors.labels(service)
        counter.inc()

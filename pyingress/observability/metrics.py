"""The process's Prometheus registry and the control-plane metrics.

One registry per process (not the global default) so tests and several servers in one
interpreter never collide; the proxy registers its own metrics into the same registry.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

RELOAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def create_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and garbage-collector metrics."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class RouteTableMetrics:
    """What the reconciler records each time it compiles and publishes a table."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "pyingress_route_table_reloads",
            "Route table compilations, by result (success: published; error: old table kept).",
            ["result"],
            registry=registry,
        )
        self.reload_duration = Histogram(
            "pyingress_route_table_reload_duration_seconds",
            "Time to compile and publish a route table.",
            buckets=RELOAD_BUCKETS,
            registry=registry,
        )
        self.problems = Gauge(
            "pyingress_route_table_problems",
            "Problems found in the objects by the last compilation, by severity.",
            ["severity"],
            registry=registry,
        )
        self.routes = Gauge(
            "pyingress_route_table_routes", "Routes in the live table.", registry=registry
        )
        self.generation = Gauge(
            "pyingress_route_table_generation", "Generation of the live table.", registry=registry
        )
        self.last_reload = Gauge(
            "pyingress_route_table_last_reload_timestamp_seconds",
            "When the live table was published (Unix time).",
            registry=registry,
        )
        for result in ("success", "error"):
            self.reloads.labels(result)
        for severity in ("error", "warning"):
            self.problems.labels(severity)

"""Per-request round-robin across a backend's endpoints."""

from __future__ import annotations

from pyingress.routing.table import Backend, Endpoint


class RoundRobin:
    """Keeps one counter per Service, so rotation survives route-table swaps.

    A new endpoint list takes effect on the very next request: the counter indexes whatever
    list the current table holds.
    """

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def pick(self, backend: Backend) -> Endpoint:
        endpoints = backend.endpoints
        count = self._counters.get(backend.service, 0)
        self._counters[backend.service] = count + 1 if count < 1 << 30 else 0
        return endpoints[count % len(endpoints)]

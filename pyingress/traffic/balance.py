"""Endpoint choice beyond round-robin: peak-EWMA, consistent hashing and sticky cookies.

Each chooser keeps per-endpoint-list data keyed by the identity of the ``endpoints`` tuple of a
compiled Backend, so the work of building a ring or an index is done once per route table, and a
new endpoint list takes effect on the next request.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pyingress.routing.table import Endpoint

RING_POINTS = 160
"""Virtual nodes per endpoint, as ingress-nginx's resty.chash uses."""
EWMA_DECAY = 10.0
"""Seconds for an old latency sample to lose most of its weight (ingress-nginx: 10 s)."""
_CACHE_LIMIT = 512
T = TypeVar("T")


def _hash64(text: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def endpoint_key(endpoint: Endpoint) -> str:
    """A stable, opaque name for an endpoint: the value of a sticky-session cookie.

    It is the same on every replica (so a client stays put whichever replica it reaches) and
    does not show the pod address.
    """
    return hashlib.sha256(str(endpoint).encode()).hexdigest()[:20]


class _ByEndpoints(Generic[T]):
    """A small cache of derived data per endpoint tuple (compared by identity)."""

    def __init__(self, build: Callable[[tuple[Endpoint, ...]], T]) -> None:
        self._build = build
        self._items: dict[int, tuple[tuple[Endpoint, ...], T]] = {}

    def get(self, endpoints: tuple[Endpoint, ...]) -> T:
        entry = self._items.get(id(endpoints))
        if entry is None or entry[0] is not endpoints:
            if len(self._items) >= _CACHE_LIMIT:
                self._items.clear()
            entry = self._items[id(endpoints)] = (endpoints, self._build(endpoints))
        return entry[1]


class HashRing:
    """A consistent-hash ring: adding or removing one endpoint moves only ~1/n of the keys."""

    __slots__ = ("_endpoints", "_points")

    def __init__(self, endpoints: Sequence[Endpoint], points: int = RING_POINTS) -> None:
        ring = sorted(
            (_hash64(f"{endpoint}#{index}".encode()), position)
            for position, endpoint in enumerate(endpoints)
            for index in range(points)
        )
        self._points = [point for point, _ in ring]
        self._endpoints = [endpoints[position] for _, position in ring]

    def pick(self, key: bytes) -> Endpoint:
        index = bisect.bisect(self._points, _hash64(key))
        return self._endpoints[index % len(self._endpoints)]


class ConsistentHash:
    """``upstream-hash-by``: the same key always lands on the same endpoint while it exists."""

    def __init__(self) -> None:
        self._rings: _ByEndpoints[HashRing] = _ByEndpoints(HashRing)

    def pick(self, endpoints: tuple[Endpoint, ...], key: bytes) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        return self._rings.get(endpoints).pick(key)


class StickyIndex:
    """Finds the endpoint a sticky-session cookie names."""

    def __init__(self) -> None:
        self._index: _ByEndpoints[dict[str, Endpoint]] = _ByEndpoints(
            lambda endpoints: {endpoint_key(endpoint): endpoint for endpoint in endpoints}
        )

    def find(self, endpoints: tuple[Endpoint, ...], cookie: str) -> Endpoint | None:
        return self._index.get(endpoints).get(cookie)


class _Stats:
    __slots__ = ("ewma", "in_flight", "updated")

    def __init__(self, now: float) -> None:
        self.ewma = 0.0
        self.in_flight = 0
        self.updated = now


class PeakEwma:
    """``load-balance: ewma``: of two random endpoints, take the one with the lower
    latency x (requests in flight + 1), as ingress-nginx's ``balancer/ewma.lua``.

    The proxy calls :meth:`started` when it sends a request and :meth:`finished` with the
    time to the response headers (or a failure, counted as a slow answer).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        decay: float = EWMA_DECAY,
    ) -> None:
        self._clock = clock
        self._random = rng or random.Random()
        self._decay = decay
        self._stats: dict[Endpoint, _Stats] = {}

    def pick(self, endpoints: tuple[Endpoint, ...]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        first, second = self._random.sample(endpoints, 2)
        return first if self.score(first) <= self.score(second) else second

    def score(self, endpoint: Endpoint) -> float:
        stats = self._stats.get(endpoint)
        if stats is None:
            return 0.0
        return self._decayed(stats, self._clock()) * (stats.in_flight + 1)

    def started(self, endpoint: Endpoint) -> None:
        stats = self._stats.get(endpoint)
        if stats is None:
            if len(self._stats) >= 4 * _CACHE_LIMIT:
                self._stats = {k: v for k, v in self._stats.items() if v.in_flight}
            stats = self._stats[endpoint] = _Stats(self._clock())
        stats.in_flight += 1

    def finished(self, endpoint: Endpoint, seconds: float) -> None:
        stats = self._stats.get(endpoint)
        if stats is None:
            return
        now = self._clock()
        stats.in_flight = max(0, stats.in_flight - 1)
        weight = math.exp(-(now - stats.updated) / self._decay)
        stats.ewma = stats.ewma * weight + seconds * (1.0 - weight)
        stats.updated = now

    def _decayed(self, stats: _Stats, now: float) -> float:
        return stats.ewma * math.exp(-(now - stats.updated) / self._decay)

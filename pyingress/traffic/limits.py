"""``limit-rps``, ``limit-rpm`` and ``limit-connections``: per client IP, per replica.

Token buckets (:mod:`pyingress.ratelimit`), as ingress-nginx's ``limit_req ... burst=N
nodelay``: a client may send ``limit x limit-burst-multiplier`` requests at once, then
``limit`` per second (or minute).
Over the limit the proxy answers ``limit-req-status-code`` (503) with ``Retry-After``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable

from pyingress.policy.filters import Headers, Reply, RequestView
from pyingress.ratelimit import RateLimiter
from pyingress.traffic.policy import LimitPolicy

MAX_CLIENTS = 100_000
"""Allow-list decisions kept before the cache starts over, so memory stays bounded."""
STALE_CONNECTION = 600.0
"""A request slot not released within this many seconds is assumed lost (never counted forever)."""
_SLOT_KEY = "traffic.limit_slot"


class ConnectionLimiter:
    """Requests in flight per client; a slot is released when the response starts."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._slots: dict[str, list[float]] = {}

    def acquire(self, client: str) -> bool:
        now = self._clock()
        slots = self._slots.setdefault(client, [])
        if slots and slots[0] < now - STALE_CONNECTION:
            slots[:] = [started for started in slots if started >= now - STALE_CONNECTION]
        if len(slots) >= self.limit:
            return False
        slots.append(now)
        return True

    def release(self, client: str) -> None:
        slots = self._slots.get(client)
        if slots:
            slots.pop(0)
            if not slots:
                del self._slots[client]

    def in_flight(self, client: str) -> int:
        return len(self._slots.get(client, ()))


class LimitFilter:
    """The run-time side of :class:`LimitPolicy` (filter order 30)."""

    def __init__(self, policy: LimitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._limiters = [
            RateLimiter(rate, rate * policy.burst_multiplier, clock)
            for rate in (policy.rps, policy.rpm / 60.0)
            if rate
        ]
        self._connections = (
            ConnectionLimiter(policy.connections, clock) if policy.connections else None
        )
        self._exempt: dict[str, bool] = {}
        self._allowlist = bool(policy.allowlist)
        self._single = self._limiters[0].wait_time if len(self._limiters) == 1 else None
        """The one rate limiter's check, called directly (the common case: rps or rpm)."""
        self.handles_response = self._connections is not None
        """Only a connection limit has anything to do when the response starts."""

    async def on_request(self, request: RequestView) -> Reply | None:
        return self.check(request)

    def check(self, request: RequestView) -> Reply | None:
        client = request.client
        if self._allowlist and self._is_exempt(client):
            return None
        single = self._single
        if single is not None:
            wait = single(client)
        else:
            wait = max((limiter.wait_time(client) for limiter in self._limiters), default=0.0)
        if wait > 0.0:
            return self._reply(wait)
        if self._connections is not None:
            if not self._connections.acquire(client):
                return self._reply(1.0)
            request.state[_SLOT_KEY] = client
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        if self._connections is None:
            return
        client = request.state.pop(_SLOT_KEY, None)
        if client is not None:
            self._connections.release(client)

    def _is_exempt(self, client: str) -> bool:
        exempt = self._exempt.get(client)
        if exempt is None:
            try:
                address = ipaddress.ip_address(client)
            except ValueError:
                exempt = False
            else:
                exempt = any(address in network for network in self.policy.allowlist)
            if len(self._exempt) >= MAX_CLIENTS:
                self._exempt.clear()
            self._exempt[client] = exempt
        return exempt

    def _reply(self, wait: float) -> Reply:
        seconds = str(max(1, math.ceil(wait))).encode()
        body = b"<html><body><h1>Too many requests</h1><p>Retry later.</p></body></html>\n"
        return Reply(
            self.policy.status,
            [(b"Retry-After", seconds), (b"Content-Type", b"text/html; charset=utf-8")],
            body,
        )

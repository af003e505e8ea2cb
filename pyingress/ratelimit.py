"""Rate limits as GCRA, the generic cell rate algorithm (a token bucket kept as one number).

Instead of a bucket of tokens refilled over time, each key keeps the time at which its bucket
would be full again (the "theoretical arrival time"): a request admitted moves it one interval
on, and a request is admitted while it lies no more than the burst ahead of now. That is the
token bucket's behaviour exactly, with one float per key and no refill arithmetic: the
per-request cost of ``limit-rps`` (as nginx's ``limit_req``), and the cap on Event writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

MAX_KEYS = 100_000
"""Keys kept before those whose bucket is full again are swept, so memory stays bounded."""
_SLACK = 1e-9
"""Rounding room: ``burst`` requests at one instant must all pass."""


class RateLimiter:
    """``rate`` requests a second per key, ``burst`` of them at once."""

    __slots__ = ("_clock", "_due", "_interval", "_tolerance", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._interval = 1.0 / rate
        self._tolerance = (self.burst - 1.0) * self._interval + _SLACK
        self._clock = clock
        self._due: dict[Hashable, float] = {}

    def wait_time(self, key: Hashable) -> float:
        """0.0 when a request for ``key`` may go now (it is counted), else the seconds until
        one may (nothing is counted)."""
        now = self._clock()
        due = self._due.get(key)
        if due is None:
            if len(self._due) >= MAX_KEYS:
                self._sweep(now)
            due = now
        elif due < now:
            due = now
        wait = due - self._tolerance - now
        if wait > 0.0:
            return wait
        self._due[key] = due + self._interval
        return 0.0

    def _sweep(self, now: float) -> None:
        full = [key for key, due in self._due.items() if due <= now]
        for key in full:
            del self._due[key]
        if len(self._due) >= MAX_KEYS:
            self._due.clear()

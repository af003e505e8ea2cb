"""Waiting on conditions and choosing ports, for tests that must hold on a busy machine."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

DEADLINE = 30.0
"""Generous default for anything a test waits on; a pass is usually far faster."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Polling:
    """The schedule both waits share: back off from 10 ms to 200 ms, fail at the deadline."""

    def __init__(self, timeout: float, what: object) -> None:
        self.timeout = timeout
        self.what = what
        self.deadline = time.monotonic() + timeout
        self.delay = 0.01

    def next_delay(self, error: Exception | None) -> float:
        """How long to sleep after a falsy result or ``error``; AssertionError past the deadline."""
        if time.monotonic() > self.deadline:
            raise AssertionError(
                f"timed out after {self.timeout}s waiting for {self.what}: {error}"
            )
        delay, self.delay = self.delay, min(self.delay * 2, 0.2)
        return delay


def wait_until(
    condition: Callable[[], object], timeout: float = DEADLINE, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    polling = _Polling(timeout, what or condition)
    while True:
        error: Exception | None = None
        try:
            result = condition()
        except Exception as exc:
            error = exc
        else:
            if result:
                return result
        time.sleep(polling.next_delay(error))


async def wait_until_async(
    condition: Callable[[], Awaitable[object]], timeout: float = DEADLINE, what: str = ""
) -> object:
    """The asyncio form of :func:`wait_until`."""
    polling = _Polling(timeout, what or condition)
    while True:
        error: Exception | None = None
        try:
            result = await condition()
        except Exception as exc:
            error = exc
        else:
            if result:
                return result
        await asyncio.sleep(polling.next_delay(error))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False

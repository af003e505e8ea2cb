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


def wait_until(
    condition: Callable[[], object], timeout: float = DEADLINE, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:
            result, last_error = None, exc
        else:
            last_error = None
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}: {last_error}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


async def wait_until_async(
    condition: Callable[[], Awaitable[object]], timeout: float = DEADLINE, what: str = ""
) -> object:
    """The asyncio form of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    last_error: Exception | None = None
    while True:
        try:
            result = await condition()
        except Exception as exc:
            result, last_error = None, exc
        else:
            last_error = None
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}: {last_error}"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False

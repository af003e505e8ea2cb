"""1 GiB through a proxy process, both ways, without the proxy's memory growing.

The proxy runs as a subprocess so its resident set can be read from ``/proc``; the backend and
the client run here and neither buffers.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.processes import ManagedProcess

GIB = 1 << 30
CHUNK = b"\xa5" * (1 << 20)
ALLOWED_GROWTH_KB = 50 * 1024
REPO = Path(__file__).resolve().parents[2]


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing")


class Sink:
    """Reads any request body to the end and answers with the number of bytes read."""

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            received = 0
            while received < length:
                received += len(await reader.read(min(1 << 20, length - received)))
            reply = str(received).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))
            await writer.drain()


class Source:
    """Answers every request with a body of ``size`` bytes, written as the socket takes it."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            size = self.size if head.startswith(b"GET /big") else 2
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            while sent < size:
                piece = CHUNK[: size - sent]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()


@pytest.fixture
def proxy_process() -> Iterator[tuple[ManagedProcess, int, list[int]]]:
    """A proxy subprocess forwarding to an upstream port the test fills in later."""
    upstream = free_port()
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "tests.proxy.proxy_main",
            "--port",
            str(port),
            "--upstream",
            str(upstream),
        ],
        cwd=str(REPO),
    )
    try:
        proc.wait_for_port(port)
        yield proc, port, [upstream]
    finally:
        proc.stop()


async def exchange(port: int, request: bytes, body_size: int = 0) -> tuple[bytes, int, bytes]:
    """Send ``request`` plus ``body_size`` body bytes; return (head, body length, body start)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    sent = 0
    while sent < body_size:
        piece = CHUNK[: body_size - sent]
        writer.write(piece)
        sent += len(piece)
        await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    start = b""
    received = 0
    while received < length:
        data = await reader.read(1 << 16)
        if not data:
            break
        if len(start) < 64:
            start += data[:64]
        received += len(data)
    writer.close()
    return head, received, start


@pytest.mark.timeout(120)
async def test_1gib_upload_streams_with_bounded_memory(proxy_process) -> None:
    proc, port, (upstream,) = proxy_process
    server = await asyncio.start_server(Sink(), "127.0.0.1", upstream)
    try:
        await exchange(port, b"POST /warm HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", 4)
        before = memory_kb(proc.proc.pid, "VmRSS")
        request = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % GIB
        head, _, body = await exchange(port, request, GIB)
        peak = memory_kb(proc.proc.pid, "VmHWM")
    finally:
        server.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert body == str(GIB).encode()
    assert peak - before < ALLOWED_GROWTH_KB, f"proxy grew from {before} kB to a peak of {peak} kB"


@pytest.mark.timeout(120)
async def test_1gib_download_streams_with_bounded_memory(proxy_process) -> None:
    proc, port, (upstream,) = proxy_process
    server = await asyncio.start_server(Source(GIB), "127.0.0.1", upstream)
    try:
        await exchange(port, b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
        before = memory_kb(proc.proc.pid, "VmRSS")
        head, received, body = await exchange(port, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        peak = memory_kb(proc.proc.pid, "VmHWM")
    finally:
        server.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: %d" % GIB in head.lower()
    assert received == GIB
    assert body.startswith(CHUNK[:16])
    assert peak - before < ALLOWED_GROWTH_KB, f"proxy grew from {before} kB to a peak of {peak} kB"

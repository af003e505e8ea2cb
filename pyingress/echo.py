"""A whoami-style echo backend: every request gets its own description back as JSON.

It is the backend of the tests and the benchmarks, so it is written like the proxy: an asyncio
protocol with ``httptools`` and keep-alive, no framework.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
from typing import Any, cast

import httptools

from pyingress.cli import StartupError

RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"


class EchoProtocol(asyncio.Protocol):
    """Answers each request on a connection in order; request bodies are read and dropped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parser: Any = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.remote = ""
        self._url = b""
        self._headers: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else ""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the request was answered; the upgrade is declined by closing
        except httptools.HttpParserError:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_message_complete(self) -> None:
        path, _, query = self._url.decode("latin-1").partition("?")
        method = self.parser.get_method()
        body = json.dumps(
            {
                "name": self.name,
                "method": method.decode("ascii"),
                "path": path,
                "query": query,
                "headers": self._headers,
                "remote": self.remote,
            }
        ).encode()
        keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        head = RESPONSE_HEAD % (len(body), b"" if keep_alive else b"connection: close\r\n")
        self.transport.write(head if method == b"HEAD" else head + body)
        if not keep_alive:
            self.transport.close()


class EchoServer:
    """An echo backend tests can run in their own event loop, several at a time."""

    def __init__(self, name: str = "echo", host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; with ``port=0`` the kernel picks a port, stored in :attr:`port`."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: EchoProtocol(self.name), self.host, self.port, backlog=4096
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {self.port} on {self.host} is already in use") from None
            message = f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            raise StartupError(message) from None
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--name", default="echo", help="name reported in every response")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")


async def _serve(args: argparse.Namespace) -> None:
    server = EchoServer(args.name, args.host, args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def run(args: argparse.Namespace) -> int:
    import uvloop

    uvloop.run(_serve(args))
    return 0

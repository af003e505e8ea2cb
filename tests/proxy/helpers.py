"""Building route tables by hand, scripted backends and a raw HTTP/1.1 client for proxy tests."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

from pyingress.model import ObjectRef
from pyingress.routing.table import Backend, Endpoint, HostRoutes, PathType, Route, RouteTable


def backend(service: str, *ports: int, unavailable: str = "") -> Backend:
    return Backend(service, tuple(Endpoint("127.0.0.1", p) for p in ports), unavailable)


def route(
    back: Backend,
    host: str = "",
    path: str = "/",
    ingress: str = "web",
    kind: PathType = PathType.PREFIX,
) -> Route:
    return Route(ObjectRef("Ingress", "default", ingress), host, path, kind, back)


def table(*routes: Route, generation: int = 0) -> RouteTable:
    result = RouteTable(generation=generation)
    for r in routes:
        if not r.host:
            if result.any_host is None:
                result.any_host = HostRoutes()
            host_routes = result.any_host
        elif r.host.startswith("*."):
            host_routes = result.wildcard_hosts.setdefault(r.host[2:], HostRoutes())
        else:
            host_routes = result.exact_hosts.setdefault(r.host, HostRoutes())
        host_routes.add(r)
    return result


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ScriptedBackend:
    """A loopback server whose every connection runs ``handler``: for exact upstream bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ScriptedBackend:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One request from a backend's point of view: (request line, headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return lines[0], headers, body


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    chunks: int = 0
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    def names(self) -> set[str]:
        return {k.decode().lower() for k, _ in self.headers}


class RawClient:
    """A keep-alive HTTP/1.1 client over a plain socket that reports framing details."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser: Any = httptools.HttpResponseParser(self)
        self.done: deque[Response] = deque()
        self._current = Response()

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def on_message_begin(self) -> None:
        self._current = Response()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._current.status = self.parser.get_status_code()
        self._current.keep_alive = self.parser.should_keep_alive()

    def on_chunk_header(self) -> None:
        self._current.chunks += 1

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self._current)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        while not self.done:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("connection closed before a complete response")
            self.parser.feed_data(data)
        return self.done.popleft()

    async def head_response(self) -> bytes:
        """The raw head of a response that has no body (HEAD); the parser cannot know that."""
        return await self.reader.readuntil(b"\r\n\r\n")

    async def closed(self) -> bool:
        """True once the server has closed the connection (reads until EOF)."""
        while True:
            try:
                data = await self.reader.read(65536)
            except ConnectionError:
                return True
            if not data:
                return True

    def close(self) -> None:
        self.writer.close()


def get(path: str = "/", host: str = "example.com", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()

"""A small ASGI bridge for the built-in applications mounted beside the proxy.

It is off the hot path: ACME challenges and login callbacks are rare. Request and response
bodies are streamed, with the same back-pressure as proxied requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pyingress.proxy import errors
from pyingress.proxy.exchange import LAST_CHUNK, Exchange, RequestHead
from pyingress.proxy.headers import DATE, HOP_BY_HOP

if TYPE_CHECKING:
    from pyingress.proxy.client import ClientConnection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("pyingress.proxy")

BODY_HIGH_WATER = 256 * 1024


class AsgiExchange(Exchange):
    """Runs one request through an ASGI application."""

    __slots__ = (
        "app",
        "body",
        "body_complete",
        "body_delivered",
        "body_size",
        "chunked",
        "gone",
        "keep_alive",
        "response_complete",
        "response_started",
        "status",
        "task",
        "waiter",
    )

    def __init__(self, conn: ClientConnection, request: RequestHead, app: ASGIApp) -> None:
        super().__init__(conn, request)
        self.app = app
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.gone = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.keep_alive = False
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.task = self.conn.loop.create_task(self.run())

    def scope(self) -> Scope:
        request = self.request
        transport = self.conn.transport
        raw_path, _, query = request.target.partition(b"?")
        client = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1" if request.http11 else "1.0",
            "method": request.method.decode("ascii"),
            "scheme": self.conn.scheme.decode("ascii"),
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(lname, value) for lname, _, value in request.headers],
            "client": (str(client[0]), int(client[1])) if client else None,
            "server": (str(local[0]), int(local[1])) if local else None,
        }

    async def run(self) -> None:
        try:
            await self.app(self.scope(), self.receive, self.send)
        except Exception:
            logger.exception("ASGI application failed")
            self._abandon()
        else:
            if not self.response_complete:
                self._abandon()

    def _abandon(self) -> None:
        """The application failed or returned without a complete response."""
        if self.done:
            return
        if self.response_started:
            self.conn.transport.abort()
            self.finish(self.status, False)
            return
        conn = self.conn
        conn.transport.write(
            errors.error_response(
                500, errors.INTERNAL, conn.server.config.server_header, close=True
            )
        )
        self.finish(500, False)

    # -- request body -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def feed_body(self, data: bytes) -> None:
        if self.gone or self.body_delivered:
            return
        self.body.append(data)
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER:
            self.conn.pause(self.conn.PAUSE_UPLOAD)
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        self._wake()

    def client_lost(self) -> None:
        self.gone = True
        self._wake()
        if not self.done:
            self.finish(499, False)

    def writing_paused(self) -> None:
        pass

    def writing_resumed(self) -> None:
        self._wake()

    async def receive(self) -> Message:
        while not self.gone and not self.body and not self.body_complete:
            await self._wait()
        if self.gone or self.body_delivered:
            while not self.gone and not self.response_complete:
                await self._wait()
            return {"type": "http.disconnect"}
        chunk = b"".join(self.body)
        self.body.clear()
        self.body_size = 0
        self.conn.resume(self.conn.PAUSE_UPLOAD)
        if self.body_complete:
            self.body_delivered = True
        return {"type": "http.request", "body": chunk, "more_body": not self.body_complete}

    # -- response -----------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        if self.gone:
            raise OSError("client disconnected")
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            self._start_response(int(message["status"]), message.get("headers", []))
        elif kind == "http.response.body" and self.response_started and not self.response_complete:
            await self._body(bytes(message.get("body", b"")), bool(message.get("more_body", False)))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        request = self.request
        conn = self.conn
        self.status = status
        self.response_started = True
        lines = [b"HTTP/1.1 %d \r\n" % status, conn.server.ident, DATE.line()]
        has_length = False
        for name, value in headers:
            lname = bytes(name).lower()
            if lname in HOP_BY_HOP or lname in (b"server", b"date"):
                continue
            if lname == b"content-length":
                has_length = True
            lines.append(b"%s: %s\r\n" % (bytes(name), bytes(value)))
        keep_alive = request.keep_alive and not request.upgrade and not conn.server.closing
        bodyless = request.head_only or status in (204, 304)
        if not has_length and not bodyless:
            if request.http11:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        elif not request.http11:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.keep_alive = keep_alive
        conn.transport.write(b"".join(lines))

    async def _body(self, body: bytes, more: bool) -> None:
        conn = self.conn
        if body and not (self.request.head_only or self.status in (204, 304)):
            if self.chunked:
                conn.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            else:
                conn.transport.write(body)
        if not more:
            self.response_complete = True
            if self.chunked:
                conn.transport.write(LAST_CHUNK)
            conn.resume(conn.PAUSE_UPLOAD)
            self._wake()
            self.finish(self.status, self.keep_alive)
            return
        while conn.write_paused_at and not self.gone:
            await self._wait()

"""The upstream leg: one keep-alive HTTP/1.1 connection to an endpoint, and the pool of them.

An :class:`UpstreamConnection` parses responses with ``httptools`` and hands each event to the
exchange it is bound to, which writes to the client. Between requests it waits in the
:class:`UpstreamPool` of its endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import httptools

from pyingress.proxy.errors import UPSTREAM_BROKEN, UPSTREAM_INVALID
from pyingress.routing.table import Endpoint

if TYPE_CHECKING:
    from pyingress.proxy.exchange import ProxyExchange

logger = logging.getLogger("pyingress.proxy")

HIGH_WATER = 256 * 1024
"""Write buffer size above which the other side of the proxy stops reading."""


def tune(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle (requests and responses are written whole) and set the buffer limits."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=HIGH_WATER)


class UpstreamConnection(asyncio.Protocol):
    """One connection to an endpoint, serving one exchange at a time."""

    def __init__(self, pool: UpstreamPool, endpoint: Endpoint) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.key: Hashable = endpoint
        """What the pool files it under: a TLS connection also by its context and name."""
        self.loop = pool.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser: Any = httptools.HttpResponseParser(self)
        self.exchange: ProxyExchange | None = None
        self.tunnel: asyncio.Transport | None = None
        self.reused = False
        self.closed = False
        self.last_io = 0.0
        self.idle_since = 0.0
        self.write_paused_at = 0.0
        self.reading_paused = False
        self._got_bytes = False
        self._started = False
        self._until_close = False
        self._interim = False
        self._switching = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []

    # -- life cycle ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tune(self.transport)

    def bind(self, exchange: ProxyExchange) -> None:
        """Serve ``exchange``: its request is about to be written."""
        self.exchange = exchange
        self.last_io = self.loop.time()
        self._got_bytes = False
        self._started = False
        self._until_close = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
            return
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if not self._started:
            retryable = self.reused and not self._got_bytes
            exchange.upstream_failed(502, UPSTREAM_BROKEN, retryable)
        elif self._until_close and exc is None:
            exchange.response_end()
        else:
            exchange.upstream_broken()

    def abort(self) -> None:
        """Drop the connection without delivering anything more to its exchange."""
        self.exchange = None
        self.closed = True
        self.transport.abort()

    # -- flow control -------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()
        if self.exchange is not None:
            self.exchange.upstream_paused()

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        if self.exchange is not None:
            self.exchange.upstream_resumed()

    def stop_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def start_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.last_io = self.loop.time()
            if not self.closed:
                self.transport.resume_reading()

    # -- parsing ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_io = self.loop.time()
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.exchange is None:
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._switch(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            if exc.__context__ is not None:
                logger.error("proxy error while relaying a response", exc_info=exc.__context__)
            self._fail()
        else:
            if self._switching:
                self._switch(b"")
            elif self.exchange is not None and self.exchange.held:
                self.exchange.flush()

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._started:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if exchange is None:
            return
        if status < 200 and status != 101:
            self._interim = True
            return
        if status == 101 and not exchange.request.upgrade:
            self._fail()
            return
        self._started = True
        self._until_close = exchange.response_head(status, self._reason, self._headers)
        if exchange.request.head_only:
            self.parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.exchange is None:
            return
        if self.parser.get_status_code() == 101:
            self._switching = True
            return
        self._finish()

    def _finish(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        self.exchange = None
        reusable = (
            not self.closed
            and exchange.request_sent()
            and not self.write_paused_at
            and self.parser.should_keep_alive()
        )
        self.reused = True
        self.start_reading()
        if reusable:
            self.pool.release(self)
        else:
            self.closed = True
            self.transport.close()
        exchange.response_end()

    def _fail(self) -> None:
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            if self._started:
                exchange.upstream_broken()
            else:
                exchange.upstream_failed(502, UPSTREAM_INVALID, False)

    def _switch(self, tail: bytes) -> None:
        self._switching = False
        exchange = self.exchange
        if exchange is None:
            self.abort()
            return
        exchange.switched(self, tail)


class UpstreamPool:
    """Idle keep-alive connections per endpoint, most recently used first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_idle: int, idle_timeout: float) -> None:
        self.loop = loop
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[Hashable, list[UpstreamConnection]] = {}

    def acquire(self, key: Hashable) -> UpstreamConnection | None:
        """An idle connection filed under ``key`` (an Endpoint, or a TLS connection's key)."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= self.max_idle:
            conn.closed = True
            conn.transport.close()
            return
        conn.idle_since = self.loop.time()
        idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def expire(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout`` (oldest are first)."""
        for endpoint, idle in list(self._idle.items()):
            while idle and now - idle[0].idle_since > self.idle_timeout:
                conn = idle.pop(0)
                conn.closed = True
                conn.transport.close()
            if not idle:
                del self._idle[endpoint]

    def idle_count(self, endpoint: Endpoint) -> int:
        return len(self._idle.get(endpoint, ()))

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.closed = True
                conn.transport.close()
        self._idle.clear()

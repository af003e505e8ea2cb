"""The client leg: one accepted connection, parsed with ``httptools``.

Requests may be pipelined: each parsed request becomes an exchange, and exchanges answer in
order. While one is queued behind another, reading from the client pauses, so a client can
never make the proxy buffer more than one read's worth of data.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from pyingress.proxy import errors
from pyingress.proxy.exchange import Exchange, RequestHead, StaticExchange
from pyingress.proxy.upstream import UpstreamConnection, tune
from pyingress.routing.paths import normalize_path
from pyingress.tls.trust import forwarded_values

if TYPE_CHECKING:
    from pyingress.proxy.server import ProxyServer

logger = logging.getLogger("pyingress.proxy")

IDENTITY_PREFIX = b"x-auth-request-"
"""Identity headers (``X-Auth-Request-User`` and friends) are dropped from every client request."""


class ClientConnection(asyncio.Protocol):
    """An accepted HTTP/1.x connection: parses requests and drives their exchanges."""

    PAUSE_PIPELINE = 1
    PAUSE_UPLOAD = 2
    PAUSE_CONNECT = 4

    def __init__(self, server: ProxyServer, scheme: bytes) -> None:
        self.server = server
        self.loop = server.loop
        self.scheme = scheme
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser: Any = httptools.HttpRequestParser(self)
        self.peer_ip = b""
        self.local_port = b""
        self.active: Exchange | None = None
        self.current: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.upgrading: Exchange | None = None
        self.tunnel: UpstreamConnection | None = None
        self.paused = 0
        self.closing = False
        self.in_message = False
        self.idle_since = 0.0
        self.write_paused_at = 0.0
        self._url = b""
        self._headers: list[tuple[bytes, bytes, bytes]] = []
        self._head_size = 0
        self._raw_size = 0
        self._too_large = False

    # -- life cycle ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        tune(self.transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode()
        local = transport.get_extra_info("sockname")
        if local:
            self.local_port = str(local[1]).encode()
        self.idle_since = self.loop.time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connection_closed(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
        for exchange in (self.active, self.current, *self.queue, self.upgrading):
            if exchange is not None:
                exchange.client_lost()
        self.queue.clear()

    def close(self) -> None:
        self.closing = True
        self.transport.close()

    def is_idle(self) -> bool:
        return self.active is None and not self.in_message and self.tunnel is None

    # -- flow control -------------------------------------------------------------------------

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closing:
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()
        if self.active is not None:
            self.active.writing_paused()

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        if self.active is not None:
            self.active.writing_resumed()

    # -- parsing ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            tunnel.last_io = self.loop.time()
            return
        if self.upgrading is not None:
            self.upgrading.tunnel_data(data)
            return
        if self.closing:
            return
        if self.in_message and self.current is None:
            self._raw_size += len(data)
            if self._raw_size > 2 * self.server.config.max_header_bytes + 65536:
                self._too_large = True
                self._reject()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgrading = self.current
            tail = data[exc.args[0] :]
            if tail and self.current is not None:
                self.current.tunnel_data(tail)
        except httptools.HttpParserError as exc:
            if exc.__context__ is not None and not isinstance(exc.__context__, HeadTooLarge):
                logger.error("proxy error while parsing a request", exc_info=exc.__context__)
            self._reject()

    def on_message_begin(self) -> None:
        self.in_message = True
        self.current = None
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._raw_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        lname = name.lower()
        if lname.startswith(IDENTITY_PREFIX):
            return  # only pyingress's own auth may tell an upstream who the user is
        self._headers.append((lname, name, value))

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.server.config.max_header_bytes:
            self._too_large = True
            raise HeadTooLarge

    def on_headers_complete(self) -> None:
        if self.closing:
            return
        parser = self.parser
        request = self._request_head(parser)
        exchange = self.server.dispatch(self, request) if request is not None else None
        if exchange is None:
            self._reject()
            return
        self.current = exchange
        if self.active is None:
            self.active = exchange
            exchange.start()
        else:
            self.queue.append(exchange)
            self.pause(self.PAUSE_PIPELINE)

    def _request_head(self, parser: Any) -> RequestHead | None:
        """The request's head, or None when it is malformed (400)."""
        method: bytes = parser.get_method()
        if method == b"CONNECT":
            return None
        target = self._url
        if target[:1] == b"/":
            raw_path = target.partition(b"?")[0]
        elif target == b"*":
            raw_path = b"*"
        else:
            try:
                raw_path = httptools.parse_url(target).path or b"/"
            except httptools.HttpParserInvalidURLError:
                return None
        path = normalize_path(raw_path.decode("utf-8", "surrogateescape"))
        request = RequestHead(
            method,
            target,
            path,
            self._headers,
            parser.get_http_version() == "1.1",
            parser.should_keep_alive(),
            parser.should_upgrade(),
            self.loop.time(),
        )
        hosts = 0
        for lname, _, value in self._headers:
            if lname == b"host":
                hosts += 1
                request.host_header = value
            elif lname == b"content-length":
                request.has_body = request.has_body or value.strip() not in (b"0", b"")
            elif lname == b"transfer-encoding":
                request.chunked = request.has_body = True
            elif lname == b"connection":
                request.connection = value
            elif lname == b"x-request-id":
                request.request_id = value or None
            elif lname == b"expect":
                request.expect_continue = value.lower() == b"100-continue"
        if hosts > 1 or (hosts == 0 and request.http11):
            return None
        trusted = self.server.config.trusted_proxies
        request.client, request.forwarded_for, request.proto = forwarded_values(
            self.peer_ip, self.scheme, self._headers, trusted
        )
        request.trusted_peer = bool(trusted) and self.peer_ip.decode("latin-1") in trusted
        request.host = request.host_header.decode("latin-1")
        return request

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.feed_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.current is not None:
            self.current.end_body()

    def _reject(self) -> None:
        """Answer a malformed request (after those before it) and close the connection."""
        status = 431 if self._too_large else 400
        reason = errors.HEADERS_TOO_LARGE if self._too_large else errors.BAD_REQUEST
        request = RequestHead(b"GET", b"", "", [], True, False, False, self.loop.time())
        exchange = StaticExchange(self, request, status, reason)
        self.closing = True
        self.pause(self.PAUSE_PIPELINE)
        if self.active is None:
            self.active = exchange
            exchange.start()
        else:
            self.queue.append(exchange)

    # -- driven by exchanges ------------------------------------------------------------------

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.active is exchange:
            self.active = None
        if not keep_alive or self.upgrading is not None or (self.closing and not self.queue):
            self.close()
            return
        self.idle_since = self.loop.time()
        if self.queue:
            upcoming = self.queue.popleft()
            self.active = upcoming
            if not self.queue:
                self.resume(self.PAUSE_PIPELINE)
            upcoming.start()
        elif self.server.closing and not self.in_message:
            self.close()

    def start_tunnel(self, upstream: UpstreamConnection) -> None:
        self.upgrading = None
        self.tunnel = upstream
        upstream.tunnel = self.transport
        self.resume(self.PAUSE_CONNECT)

    def tick(self, now: float) -> None:
        config = self.server.config
        if self.tunnel is not None:
            if now - self.tunnel.last_io > config.read_timeout:
                self.tunnel.transport.close()
                self.close()
        elif self.write_paused_at and now - self.write_paused_at > config.send_timeout:
            self.closing = True
            self.transport.abort()
        elif self.active is not None:
            self.active.tick(now)
        elif now - self.idle_since > config.keepalive_timeout:
            self.close()


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing an oversized request head."""

"""One request on a client connection and the response to it.

The client connection parses requests and hands each one, as a :class:`RequestHead`, to an
exchange: :class:`StaticExchange` answers by itself (404, 503, 400...), :class:`ProxyExchange`
relays to an upstream endpoint, and the ASGI bridge runs a mounted application. Exchanges on one
connection respond strictly in order; the connection starts the next one when the previous one
calls :meth:`ClientConnection.exchange_done`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from pyingress.policy.filters import NO_NAMES
from pyingress.proxy import errors
from pyingress.proxy.headers import (
    DATE,
    HOP_BY_HOP,
    REQUEST_DROPPED,
    RESPONSE_DROPPED,
    connection_tokens,
    new_request_id,
)
from pyingress.proxy.upstream import UpstreamConnection
from pyingress.routing.table import Endpoint, Route
from pyingress.traffic import proxying
from pyingress.traffic.proxying import TrafficState

if TYPE_CHECKING:
    from pyingress.policy.filters import Field
    from pyingress.proxy.client import ClientConnection

NO_BODY = 0
RAW = 1
CHUNKED = 2

LAST_CHUNK = b"0\r\n\r\n"


class RequestHead:
    """What the client connection learnt from a request's head."""

    __slots__ = (
        "added",
        "added_lines",
        "chunked",
        "client",
        "connection",
        "expect_continue",
        "forwarded_for",
        "has_body",
        "head_only",
        "headers",
        "host",
        "host_header",
        "http11",
        "keep_alive",
        "method",
        "path",
        "proto",
        "removed",
        "request_id",
        "started",
        "target",
        "trusted_peer",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: str,
        headers: list[tuple[bytes, bytes, bytes]],
        http11: bool,
        keep_alive: bool,
        upgrade: bool,
        started: float,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.headers = headers
        """``(lower-case name, name, value)`` in arrival order."""
        self.http11 = http11
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.started = started
        self.head_only = method == b"HEAD"
        self.host_header = b""
        self.host = ""
        self.chunked = False
        self.has_body = False
        self.expect_continue = False
        self.request_id: bytes | None = None
        self.connection: bytes | None = None
        self.client = b""
        """The client address (``X-Real-IP``): the peer, or what a trusted proxy says."""
        self.forwarded_for = b""
        self.proto = b""
        self.trusted_peer = False
        self.removed: frozenset[bytes] | set[bytes] = NO_NAMES
        """Names of the client's headers a route filter removed: not forwarded."""
        self.added: tuple[Field, ...] | list[Field] = ()
        """Fields a route filter added: forwarded after the client's."""
        self.added_lines: bytes | None = None
        """``added`` as written upstream, when they are one filter's prepared edit."""

    def header(self, name: bytes) -> bytes | None:
        """The first value of a request header as it will be forwarded (``name`` lower-case)."""
        if name not in self.removed:
            for lname, _, value in self.headers:
                if lname == name:
                    return value
        for lname, _, value in self.added:
            if lname == name:
                return value
        return None


class Exchange:
    """The interface the client connection drives; subclasses answer the request."""

    __slots__ = ("conn", "done", "request")

    def __init__(self, conn: ClientConnection, request: RequestHead) -> None:
        self.conn = conn
        self.request = request
        self.done = False

    def start(self) -> None:
        """The exchange is first in line: respond now."""

    def feed_body(self, data: bytes) -> None:
        """A piece of the request body."""

    def end_body(self) -> None:
        """The request body is complete."""

    def tunnel_data(self, data: bytes) -> None:
        """Bytes after an ``Upgrade`` request, before the upstream has switched protocols."""

    def client_lost(self) -> None:
        """The client connection is gone."""
        self.done = True

    def writing_paused(self) -> None:
        """The client's write buffer is full: stop producing."""

    def writing_resumed(self) -> None:
        """The client's write buffer drained."""

    def tick(self, now: float) -> None:
        """Called about once a second while the exchange is active; enforces timeouts."""

    def finish(self, status: int, keep_alive: bool, route: Route | None = None) -> None:
        if self.done:
            return
        self.done = True
        conn = self.conn
        metrics = conn.server.metrics
        if metrics is not None:
            ingress = route.ingress if route is not None else None
            host = route.host if route is not None else ""
            metrics.observe(ingress, host, status, conn.loop.time() - self.request.started)
        conn.exchange_done(self, keep_alive)


class StaticExchange(Exchange):
    """Answers with an error page; the request body, if any, is read and dropped."""

    __slots__ = ("reason", "route", "status")

    def __init__(
        self,
        conn: ClientConnection,
        request: RequestHead,
        status: int,
        reason: str,
        route: Route | None = None,
    ) -> None:
        super().__init__(conn, request)
        self.status = status
        self.reason = reason
        self.route = route

    def start(self) -> None:
        request = self.request
        conn = self.conn
        keep_alive = request.keep_alive and not request.upgrade and not conn.server.closing
        conn.transport.write(
            errors.error_response(
                self.status,
                self.reason,
                conn.server.config.server_header,
                head=request.head_only,
                close=not keep_alive,
            )
        )
        self.finish(self.status, keep_alive, self.route)


class ProxyExchange(Exchange):
    """Relays one request to an endpoint of its route and streams the response back."""

    __slots__ = (
        "body_done",
        "endpoint",
        "framing",
        "head_sent",
        "held",
        "keep_alive",
        "pending",
        "retried",
        "route",
        "status",
        "traffic",
        "tunnel_pending",
        "upstream",
        "upstream_head",
    )

    def __init__(self, conn: ClientConnection, request: RequestHead, route: Route) -> None:
        super().__init__(conn, request)
        self.route = route
        self.endpoint: Endpoint | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_head = b""
        self.pending: list[bytes] = []
        self.tunnel_pending: list[bytes] = []
        self.body_done = not request.has_body
        self.head_sent = False
        self.held = b""
        """The response head, written together with the first body bytes (one send, not two)."""
        self.keep_alive = False
        self.retried = False
        self.framing = NO_BODY
        self.status = 0
        self.traffic: TrafficState | None = None

    # -- request leg --------------------------------------------------------------------------

    def start(self) -> None:
        conn = self.conn
        server = conn.server
        traffic = self.route.policy.traffic
        if traffic is None or (traffic.plain_upstream and not self.request.has_body):
            self.endpoint = endpoint = server.balancer.pick(self.route.backend)
        else:
            picked = self.endpoint = proxying.begin(self, traffic)
            if picked is None:
                return
            endpoint = picked
        self.upstream_head = upstream_request_head(self.request, conn, endpoint)
        if self.request.expect_continue and not self.body_done:
            conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        key = endpoint if self.traffic is None else proxying.pool_key(self, endpoint)
        upstream = server.pool.acquire(key)
        if upstream is None:
            self.connect()
        else:
            self.attach(upstream)

    def connect(self) -> None:
        conn = self.conn
        if not self.body_done:
            conn.pause(conn.PAUSE_CONNECT)
        conn.loop.create_task(self._connect())

    async def _connect(self) -> None:
        conn = self.conn
        server = conn.server
        endpoint = self.endpoint
        assert endpoint is not None
        timeout, tls, server_name = proxying.connect_options(self, server.config)
        try:
            async with asyncio.timeout(timeout):
                _, upstream = await conn.loop.create_connection(
                    lambda: UpstreamConnection(server.pool, endpoint),
                    endpoint.address,
                    endpoint.port,
                    ssl=tls,
                    server_hostname=server_name,
                )
        except TimeoutError:
            self._connect_failed(504, errors.CONNECT_TIMEOUT)
        except OSError:
            self._connect_failed(502, errors.CONNECT_REFUSED)
        else:
            if tls is not None:
                upstream.key = (endpoint, tls, server_name)
            if self.done:
                server.pool.release(upstream)
            else:
                self.attach(upstream)

    def _connect_failed(self, status: int, reason: str) -> None:
        metrics = self.conn.server.metrics
        if metrics is not None:
            metrics.connect_error(self.route.backend.service)
        if not self.done and not proxying.retry_elsewhere(self):
            self.respond_error(status, reason)

    def attach(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream
        upstream.bind(self)
        if self.pending:
            upstream.transport.writelines([self.upstream_head, *self.pending])
            self.pending = []
        else:
            upstream.transport.write(self.upstream_head)
        self.conn.resume(self.conn.PAUSE_CONNECT)

    def feed_body(self, data: bytes) -> None:
        if self.done or (self.traffic is not None and not proxying.body_allowed(self, len(data))):
            return
        parts: tuple[bytes, ...]
        parts = (b"%x\r\n" % len(data), data, b"\r\n") if self.request.chunked else (data,)
        upstream = self.upstream
        if upstream is None:
            self.pending.extend(parts)
        else:
            upstream.transport.writelines(parts)
            upstream.last_io = self.conn.loop.time()

    def end_body(self) -> None:
        if self.body_done:
            return
        self.body_done = True
        if self.done or not self.request.chunked:
            return
        if self.upstream is None:
            self.pending.append(LAST_CHUNK)
        else:
            self.upstream.transport.write(LAST_CHUNK)

    def request_sent(self) -> bool:
        return self.body_done

    def tunnel_data(self, data: bytes) -> None:
        if self.done:
            return
        self.tunnel_pending.append(data)
        self.conn.pause(self.conn.PAUSE_CONNECT)

    # -- response leg -------------------------------------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Write the response head; True when the body ends only when the upstream closes."""
        return self.write_head(status, reason, headers)

    def write_head(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        extra: bytes = b"",
        skip: AbstractSet[bytes] = RESPONSE_DROPPED,
    ) -> bool:
        """:meth:`response_head` with a route's filter edits, applied in the one pass over the
        upstream's headers: those named in ``skip`` (a superset of ``RESPONSE_DROPPED``: the
        hop-by-hop and framing names, plus those filters drop) are left out, and ``extra``
        (header lines that need no handling by the proxy,
        :attr:`~pyingress.policy.filters.ResponsePlan.appendable`) added."""
        request = self.request
        if self.traffic is not None:
            proxying.response_headers(self, headers)
        self.status = status
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason), self.conn.server.ident, DATE.line()]
        named: set[bytes] | None = None
        te_chunked = False
        has_length = False
        upgrade = b""
        for name, value in headers:
            lname = name.lower()
            if lname in skip:
                if lname == b"connection":
                    # Hop-by-hop names are dropped anyway: ``keep-alive`` costs no second pass.
                    if value.lower() != b"keep-alive":
                        named = connection_tokens(value) - HOP_BY_HOP
                elif lname == b"transfer-encoding":
                    te_chunked = True
                elif lname == b"upgrade":
                    upgrade = value
                continue
            if lname == b"content-length":
                has_length = True
            parts.append(b"%s: %s\r\n" % (name, value))
        if extra:
            parts.append(extra)
        if named:
            parts = [p for p in parts if p.partition(b":")[0].lower() not in named]
        until_close = False
        keep_alive = request.keep_alive and not self.conn.server.closing
        if status == 101:
            parts.append(b"upgrade: %s\r\nconnection: upgrade\r\n" % upgrade)
            self.framing = NO_BODY
        elif request.head_only or status in (204, 304):
            self.framing = NO_BODY
        else:
            if te_chunked and has_length:
                parts = [p for p in parts if not p.lower().startswith(b"content-length:")]
                has_length = False
            if has_length:
                self.framing = RAW
            else:
                until_close = not te_chunked
                if request.http11:
                    self.framing = CHUNKED
                    parts.append(b"transfer-encoding: chunked\r\n")
                else:
                    self.framing = RAW
                    keep_alive = False
        if request.upgrade and status != 101:
            keep_alive = False
        if status != 101:
            if not keep_alive:
                parts.append(b"connection: close\r\n")
            elif not request.http11:
                parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.keep_alive = keep_alive
        self.head_sent = True
        self.held = b"".join(parts)
        return until_close

    def flush(self) -> None:
        """Send a held response head: the upstream's bytes so far have all been handled."""
        held = self.held
        if held:
            self.held = b""
            self.conn.transport.write(held)

    def response_body(self, data: bytes) -> None:
        framing = self.framing
        held = self.held
        if held:
            self.held = b""
        if framing == RAW:
            if held:
                self.conn.transport.writelines((held, data))
            else:
                self.conn.transport.write(data)
        elif framing == CHUNKED:
            self.conn.transport.writelines((held, b"%x\r\n" % len(data), data, b"\r\n"))
        elif held:
            self.conn.transport.write(held)

    def response_end(self) -> None:
        """The upstream delivered the whole response (the connection is already released)."""
        self.upstream = None
        if self.done:
            return
        held = self.held
        self.held = b""
        if self.framing == CHUNKED:
            self.conn.transport.write(held + LAST_CHUNK)
        elif held:
            self.conn.transport.write(held)
        self.conn.resume(self.conn.PAUSE_UPLOAD)
        self.finish(self.status, self.keep_alive, self.route)

    def switched(self, upstream: UpstreamConnection, tail: bytes) -> None:
        """The upstream answered 101: from now on bytes flow both ways unchanged."""
        conn = self.conn
        self.flush()
        if tail:
            conn.transport.write(tail)
        if self.tunnel_pending:
            upstream.transport.writelines(self.tunnel_pending)
            self.tunnel_pending = []
        conn.start_tunnel(upstream)
        metrics = conn.server.metrics
        if metrics is not None:
            route = self.route
            metrics.observe(route.ingress, route.host, 101, conn.loop.time() - self.request.started)

    def upstream_failed(self, status: int, reason: str, retryable: bool) -> None:
        """The upstream went away or misbehaved before a response head arrived."""
        self.upstream = None
        if self.done:
            return
        if retryable and not self.retried and not self.request.has_body:
            self.retried = True  # a pooled connection the endpoint had just closed
            self.connect()
            return
        self.respond_error(status, reason)

    def upstream_broken(self) -> None:
        """The upstream failed mid-response: the client must see a truncated response."""
        self.upstream = None
        if self.done:
            return
        self.flush()
        self.conn.transport.abort()
        self.finish(self.status or 502, False, self.route)

    def respond_error(self, status: int, reason: str) -> None:
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abort()
        request = self.request
        conn = self.conn
        if self.head_sent:
            self.flush()
            conn.transport.abort()
            self.finish(status, False, self.route)
            return
        keep_alive = request.keep_alive and not request.upgrade and not conn.server.closing
        conn.transport.write(
            errors.error_response(
                status,
                reason,
                conn.server.config.server_header,
                head=request.head_only,
                close=not keep_alive,
            )
        )
        conn.resume(conn.PAUSE_CONNECT | conn.PAUSE_UPLOAD)
        self.finish(status, keep_alive, self.route)

    # -- events from the client side ----------------------------------------------------------

    def client_lost(self) -> None:
        if self.done:
            return
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abort()
        self.finish(499, False, self.route)

    def upstream_paused(self) -> None:
        self.conn.pause(self.conn.PAUSE_UPLOAD)

    def upstream_resumed(self) -> None:
        self.conn.resume(self.conn.PAUSE_UPLOAD)

    def writing_paused(self) -> None:
        if self.upstream is not None:
            self.upstream.stop_reading()

    def writing_resumed(self) -> None:
        if self.upstream is not None:
            self.upstream.start_reading()

    def tick(self, now: float) -> None:
        upstream = self.upstream
        if upstream is None or self.done:
            return
        send_timeout, read_timeout = proxying.timeouts(self, self.conn.server.config)
        if upstream.write_paused_at and now - upstream.write_paused_at > send_timeout:
            self.respond_error(504, errors.SEND_TIMEOUT)
        elif not upstream.reading_paused and now - upstream.last_io > read_timeout:
            self.respond_error(504, errors.READ_TIMEOUT)


def upstream_request_head(
    request: RequestHead, conn: ClientConnection, endpoint: Endpoint
) -> bytes:
    """The request line and headers sent upstream: hop-by-hop headers out, forwarding headers in."""
    parts = [request.method, b" ", request.target, b" HTTP/1.1\r\n"]
    named = connection_tokens(request.connection) if request.connection else None
    removed, added, lines = request.removed, request.added, request.added_lines
    sources: tuple[tuple[Sequence[Field], frozenset[bytes]], ...]
    sources = ((request.headers, _dropping(removed) if removed else REQUEST_DROPPED),)
    if added and (lines is None or named is not None):
        sources += ((added, REQUEST_DROPPED),)
        lines = None
    for fields, dropped in sources:
        for lname, name, value in fields:
            if lname in dropped:
                continue
            if named is not None and lname in named:
                continue
            if lname == b"cf-connecting-ip" and not request.trusted_peer:
                continue
            if lname == b"content-length" and request.chunked:
                continue
            parts.append(b"%s: %s\r\n" % (name, value))
    if lines is not None:
        parts.append(lines)
    if not request.host_header:
        parts.append(b"host: %s\r\n" % str(endpoint).encode())
    if request.upgrade:
        for lname, _, value in request.headers:
            if lname == b"upgrade":
                parts.append(b"upgrade: %s\r\nconnection: upgrade\r\n" % value)
                break
    if request.chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    request_id = request.request_id or new_request_id()
    parts.append(
        b"x-request-id: %s\r\nx-real-ip: %s\r\nx-forwarded-for: %s\r\nx-forwarded-host: %s\r\n"
        b"x-forwarded-port: %s\r\nx-forwarded-proto: %s\r\n\r\n"
        % (
            request_id,
            request.client,
            request.forwarded_for,
            request.host_header,
            conn.local_port,
            request.proto,
        )
    )
    return b"".join(parts)


_DROPPING: dict[frozenset[bytes], frozenset[bytes]] = {}


def _dropping(removed: frozenset[bytes] | set[bytes]) -> frozenset[bytes]:
    """``REQUEST_DROPPED`` and the names filters removed, in one set (made once per filter's
    shared names)."""
    if not isinstance(removed, frozenset):
        return REQUEST_DROPPED | removed
    both = _DROPPING.get(removed)
    if both is None:
        if len(_DROPPING) >= 1024:
            _DROPPING.clear()
        both = _DROPPING[removed] = REQUEST_DROPPED | removed
    return both

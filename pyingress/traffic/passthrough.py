"""``ssl-passthrough``: route a TLS connection by its SNI name without terminating it.

With ``serve --enable-ssl-passthrough`` the HTTPS listener accepts connections itself and peeks
at the ClientHello (``MSG_PEEK``: nothing is consumed). When the SNI name is a host with an
``ssl-passthrough`` Ingress, the connection is relayed byte for byte to the ready endpoints of
that route (round-robin, the next one when one refuses); anything else is handed, still
untouched, to the TLS-terminating proxy on the same socket, so the proxy sees the real peer
address. ingress-nginx has the same shape (a TCP proxy on 443 in front of nginx) but hands the
terminated connections to nginx over loopback with the PROXY protocol.

Endpoints rather than the ClusterIP (ingress-nginx's choice): the controller already knows the
ready endpoints, the relay skips one that refuses, and a ClusterIP is not routable from a
proxy outside the cluster network. ``service-upstream: "true"`` still selects the ClusterIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from pyingress.routing.table import Backend, Endpoint, HostRoutes, RouteTable

if TYPE_CHECKING:
    from pyingress.proxy.server import ProxyServer

MAX_HELLO = 16384 + 5
"""A ClientHello must fit in the first TLS record (16 KiB); more is not a client we serve."""
INCOMPLETE = ""
""":func:`client_hello_sni` result when more bytes are needed."""
HELLO_TIMEOUT = 10.0
"""Seconds a new connection has to send its ClientHello."""
CONNECT_TIMEOUT = 5.0
MAX_TRIES = 3
"""Endpoints tried before a passthrough connection is given up (``proxy-next-upstream-tries``)."""
KEEPALIVE = (60, 10, 6)
"""TCP keep-alive on both sides of a relay: first probe after 60 s idle, then every 10 s, the
connection dropped after 6 unanswered. A relay has no idle timeout of its own (Argo CD's
streams may be quiet for long), so this is what reclaims one whose peer vanished."""

log = logging.getLogger("pyingress.passthrough")


class NotTLS(ValueError):
    """The first bytes are not a TLS ClientHello."""


def client_hello_sni(data: bytes) -> str | None:
    """The SNI name in a ClientHello, None without one, ``INCOMPLETE`` when more is needed.

    Raises :class:`NotTLS` when the bytes cannot be a ClientHello.
    """
    if len(data) < 5:
        return INCOMPLETE
    if data[0] != 0x16 or data[1] != 0x03:
        raise NotTLS("not a TLS handshake record")
    length = int.from_bytes(data[3:5], "big")
    if len(data) < 5 + length:
        return INCOMPLETE
    body = memoryview(data)[5 : 5 + length]
    try:
        return _sni_from_handshake(body)
    except IndexError:
        raise NotTLS("truncated ClientHello") from None


def _sni_from_handshake(body: memoryview) -> str | None:
    if body[0] != 0x01:
        raise NotTLS("not a ClientHello")
    position = 4 + 2 + 32
    position += 1 + body[position]
    position += 2 + int.from_bytes(body[position : position + 2], "big")
    position += 1 + body[position]
    if position + 2 > len(body):
        return None
    end = position + 2 + int.from_bytes(body[position : position + 2], "big")
    position += 2
    while position + 4 <= end:
        kind = int.from_bytes(body[position : position + 2], "big")
        size = int.from_bytes(body[position + 2 : position + 4], "big")
        position += 4
        if kind == 0:
            names = body[position : position + size]
            if names[2] == 0:
                name_length = int.from_bytes(names[3:5], "big")
                return bytes(names[5 : 5 + name_length]).decode("ascii", "replace").lower()
            return None
        position += size
    return None


def needed_bytes(data: bytes) -> int:
    """How many bytes the first TLS record needs in all (at least its 5-byte header)."""
    if len(data) < 5:
        return 5
    return min(5 + int.from_bytes(data[3:5], "big"), MAX_HELLO)


class PassthroughHosts:
    """The ``ssl-passthrough`` hosts of one route table, by SNI name (the path is irrelevant).

    An exact host that is served without passthrough hides a passthrough wildcard, as it
    does for HTTP routing.
    """

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self.exact: dict[str, Backend] = {}
        self.wildcard: dict[str, Backend] = {}
        for name, routes in table.exact_hosts.items():
            backend = _passthrough_backend(routes)
            if backend is not None:
                self.exact[name] = backend
        for parent, routes in table.wildcard_hosts.items():
            backend = _passthrough_backend(routes)
            if backend is not None:
                self.wildcard[parent] = backend

    def backend(self, sni: str | None) -> Backend | None:
        """The backend to relay to, or None: terminate the TLS here."""
        if not sni or not (self.exact or self.wildcard):
            return None
        name = sni.rstrip(".").lower()
        backend = self.exact.get(name)
        if backend is not None or name in self.table.exact_hosts:
            return backend
        dot = name.find(".")
        return self.wildcard.get(name[dot + 1 :]) if dot > 0 else None


def _passthrough_backend(routes: HostRoutes) -> Backend | None:
    for route in routes.routes():
        traffic = route.policy.traffic
        if traffic is not None and traffic.ssl_passthrough:
            return route.backend
    return None


def passthrough_endpoints(table: RouteTable, sni: str | None) -> tuple[Endpoint, ...] | None:
    """The endpoints to relay to when ``sni`` names an ``ssl-passthrough`` host, else None."""
    backend = PassthroughHosts(table).backend(sni)
    return None if backend is None else backend.endpoints


class _End(asyncio.Protocol):
    """One side of a relay: what arrives goes to the other side, with back-pressure both ways.

    The client side starts paused and is resumed once the backend side is connected (bytes
    that arrive before, as uvloop may start reading anyway, wait in ``pending``); a
    half-close is passed on, and the relay closes when both directions are done.
    """

    def __init__(self, peer: _End | None = None, paused: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.paused = paused
        self.got_eof = False
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        keep_alive(transport.get_extra_info("socket"))
        if self.paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
            return
        self.pending += data
        if self.transport is not None:
            self.transport.pause_reading()

    def joined(self) -> None:
        """The peer is connected: pass on what arrived before and start relaying."""
        assert self.transport is not None and self.peer is not None
        if self.pending and self.peer.transport is not None:
            self.peer.transport.write(self.pending)
            self.pending = b""
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.got_eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.got_eof:
            self.close_both()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_both()

    def close_both(self) -> None:
        for end in (self, self.peer):
            if end is not None and end.transport is not None:
                end.transport.close()


def keep_alive(sock: socket.socket | None) -> None:
    """Turn on TCP keep-alive with the :data:`KEEPALIVE` timings (where the OS has them)."""
    if sock is None:
        return
    idle, interval, count = KEEPALIVE
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


class PassthroughListener:
    """The HTTPS listener with ``--enable-ssl-passthrough``: peek, then relay or terminate.

    ``table`` gives the live route table; ``terminate(sock)`` takes over a connection that is
    not passed through (TLS termination on that very socket).
    """

    def __init__(
        self,
        table: Callable[[], RouteTable],
        terminate: Callable[[socket.socket], None],
        hello_timeout: float = HELLO_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._table = table
        self._terminate = terminate
        self._hello_timeout = hello_timeout
        self._connect_timeout = connect_timeout
        self._hosts: PassthroughHosts | None = None
        self._counters: dict[str, int] = {}
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ports(self) -> list[int]:
        return [int(sock.getsockname()[1]) for sock in self._sockets]

    def listen(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Bind ``host:port`` (every address it resolves to) and start accepting."""
        self._loop = loop = asyncio.get_running_loop()
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(4096)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting; connections already handed on are not touched."""
        for sock in self._sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed on the https port: %s", exc)
                return
            sock.setblocking(False)
            _Hello(self, sock).start()

    def hosts(self) -> PassthroughHosts:
        table = self._table()
        hosts = self._hosts
        if hosts is None or hosts.table is not table:
            hosts = self._hosts = PassthroughHosts(table)
        return hosts

    def decided(self, sock: socket.socket, sni: str | None) -> None:
        """The ClientHello was read (or will never be): relay or terminate ``sock``."""
        backend = self.hosts().backend(sni)
        if backend is None:
            self._terminate(sock)
        elif not backend.endpoints:
            log.info("ssl-passthrough host=%s has no ready endpoint", sni)
            sock.close()
        else:
            self._spawn(self._relay(sock, self._order(backend)))

    def _order(self, backend: Backend) -> list[Endpoint]:
        """Round-robin: this connection's first choice, then the next ones to fall back on."""
        endpoints = backend.endpoints
        count = self._counters.get(backend.service, 0)
        self._counters[backend.service] = count + 1 if count < 1 << 30 else 0
        start = count % len(endpoints)
        rotated = endpoints[start:] + endpoints[:start]
        return list(rotated[:MAX_TRIES])

    async def _relay(self, sock: socket.socket, endpoints: list[Endpoint]) -> None:
        client = _End(paused=True)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: client, sock)
        except OSError:
            sock.close()
            return
        for endpoint in endpoints:
            if await self._connect(client, endpoint):
                return
        client.close_both()

    async def _connect(self, client: _End, endpoint: Endpoint) -> bool:
        """Join ``client`` to ``endpoint``; False when the endpoint cannot be reached."""
        if client.transport is None or client.transport.is_closing():
            return True
        upstream = client.peer = _End(peer=client)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: upstream, endpoint.address, endpoint.port
                )
        except (OSError, TimeoutError) as exc:
            client.peer = None
            log.info("ssl-passthrough endpoint=%s failed: %s", endpoint, exc or "timeout")
            return False
        if client.transport.is_closing():
            upstream.close_both()
        else:
            client.joined()
        return True

    def _spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Hello:
    """Waits, without consuming anything, until a new connection's ClientHello is readable."""

    __slots__ = ("listener", "loop", "sock", "timer")

    def __init__(self, listener: PassthroughListener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.timer = self.loop.call_later(self.listener._hello_timeout, self._give_up)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(MAX_HELLO, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._give_up()
            return
        if not data:
            self._give_up()
            return
        try:
            sni = client_hello_sni(data)
        except NotTLS:
            sni = None
        if sni == INCOMPLETE and len(data) < MAX_HELLO:
            # Still there on the next peek: wake only once the whole record has arrived.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, needed_bytes(data))
            return
        self._stop()
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        try:
            self.listener.decided(self.sock, sni or None)
        except Exception:
            log.exception("ssl-passthrough: cannot hand on a connection")
            self.sock.close()

    def _stop(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if self.timer is not None:
            self.timer.cancel()

    def _give_up(self) -> None:
        self._stop()
        self.sock.close()


def terminate_with(
    protocol_factory: Callable[[], asyncio.Protocol],
    context: ssl.SSLContext,
    tasks: set[asyncio.Task[None]] | None = None,
) -> Callable[[socket.socket], None]:
    """A ``terminate`` for :class:`PassthroughListener`: TLS on the accepted socket itself."""
    pending = tasks if tasks is not None else set()

    async def handshake(sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(protocol_factory, sock, ssl=context)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.debug("tls handshake failed: %s", exc)
            sock.close()

    def terminate(sock: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(handshake(sock))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return terminate


def listen_https(
    proxy: ProxyServer, host: str, port: int, context: ssl.SSLContext, reuse_port: bool = False
) -> PassthroughListener:
    """``serve --enable-ssl-passthrough``: the HTTPS listener of ``proxy``, with passthrough.

    Terminated connections become the proxy's own HTTPS connections (scheme ``https``, the
    certificates of ``context``); the listener closes with the proxy.
    """
    from pyingress.proxy.client import ClientConnection

    terminate = terminate_with(lambda: ClientConnection(proxy, b"https"), context)
    listener = PassthroughListener(lambda: proxy.holder.table, terminate)
    listener.listen(host, port, reuse_port)
    proxy.on_close.append(listener.close)
    return listener

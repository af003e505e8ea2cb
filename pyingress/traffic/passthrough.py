"""``ssl-passthrough``: route a TLS connection by its SNI name without terminating it.

The HTTPS listener peeks at the ClientHello: when the SNI name belongs to a route with
``ssl-passthrough``, the connection (ClientHello included) is relayed byte for byte to a ready
endpoint of that route; otherwise it goes on to the TLS-terminating proxy. This is the shape
ingress-nginx uses (a TCP proxy on 443 in front of nginx), behind one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from pyingress.routing.table import Endpoint, RouteTable

MAX_HELLO = 16384 + 5
"""A ClientHello must fit in the first TLS record (16 KiB); more is not a client we serve."""
INCOMPLETE = ""
""":func:`client_hello_sni` result when more bytes are needed."""


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


def passthrough_endpoints(table: RouteTable, sni: str | None) -> tuple[Endpoint, ...] | None:
    """The endpoints to relay to when ``sni`` names an ``ssl-passthrough`` host, else None."""
    if not sni:
        return None
    route = table.match(sni, "/")
    if route is None or route.host in ("", None):
        return None
    traffic = route.policy.traffic
    if traffic is None or not traffic.ssl_passthrough:
        return None
    return route.backend.endpoints


class _Pipe(asyncio.Protocol):
    """The upstream side of a relay: what arrives goes to ``peer`` (the client), and a full
    upstream write buffer pauses reading from the client."""

    def __init__(self, peer: asyncio.Transport) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer.can_write_eof():
            self.peer.write_eof()
        return True

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()


class SniRouter(asyncio.Protocol):
    """Accepts a TCP connection on the HTTPS port and decides where its TLS goes.

    ``table`` gives the current route table; ``terminate`` is the address of the
    TLS-terminating listener (normally on loopback) that receives everything else.
    """

    def __init__(
        self,
        table: Callable[[], RouteTable],
        terminate: tuple[str, int],
        connect_timeout: float = 5.0,
    ) -> None:
        self._table = table
        self._terminate = terminate
        self._connect_timeout = connect_timeout
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._deciding = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._upstream is not None:
            self._upstream.write(data)
            return
        self._buffer += data
        if not self._deciding:
            return
        try:
            sni = client_hello_sni(self._buffer)
        except NotTLS:
            sni = None
        else:
            if sni == INCOMPLETE and len(self._buffer) < MAX_HELLO:
                return
        self._deciding = False
        assert self._transport is not None
        self._transport.pause_reading()
        endpoints = passthrough_endpoints(self._table(), sni or None)
        if endpoints is not None and not endpoints:
            self._transport.close()
            return
        target = self._terminate
        if endpoints:
            chosen = endpoints[random.randrange(len(endpoints))]
            target = (chosen.address, chosen.port)
        asyncio.get_running_loop().create_task(self._connect(target))

    async def _connect(self, target: tuple[str, int]) -> None:
        client = self._transport
        assert client is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                upstream, _ = await loop.create_connection(lambda: _Pipe(client), *target)
        except (OSError, TimeoutError):
            client.close()
            return
        if client.is_closing():
            upstream.close()
            return
        self._upstream = upstream
        upstream.write(self._buffer)
        self._buffer = b""
        client.resume_reading()

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    def eof_received(self) -> bool:
        if self._upstream is not None and self._upstream.can_write_eof():
            self._upstream.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None:
            with contextlib.suppress(Exception):
                self._upstream.close()

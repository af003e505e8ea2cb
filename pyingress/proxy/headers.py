"""Which headers cross the proxy, and the ones it adds.

A proxy must not forward hop-by-hop headers (RFC 9110 section 7.6.1): they describe one
connection, not the message. ``Proxy`` is dropped as well so a backend cannot be tricked into
using a client-chosen HTTP proxy (httpoxy). The client-supplied ``X-Forwarded-*`` values are
replaced unless the peer is a trusted proxy (:func:`pyingress.tls.trust.forwarded_values`).
"""

from __future__ import annotations

import os
import time
from email.utils import formatdate

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy",
    }
)

REQUEST_REPLACED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-real-ip",
        b"x-request-id",
        b"expect",
    }
)
"""Request headers the proxy sets itself (``Expect`` is answered by the proxy, not forwarded)."""

REQUEST_DROPPED = HOP_BY_HOP | REQUEST_REPLACED

RESPONSE_DROPPED = HOP_BY_HOP | {b"server", b"date"}
"""Response headers the proxy drops; it sends its own ``Server`` and ``Date`` like nginx."""


def connection_tokens(value: bytes) -> set[bytes]:
    """The header names listed in a ``Connection`` header, lower-cased."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def new_request_id() -> bytes:
    """32 random hex characters, like nginx's ``$request_id``."""
    return os.urandom(16).hex().encode()


class DateHeader:
    """The ``Date`` header line, formatted at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


DATE = DateHeader()

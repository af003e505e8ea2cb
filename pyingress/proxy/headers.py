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


class RequestIds:
    """32 random hex characters per request, like nginx's ``$request_id``.

    Random bytes are read from the OS 4 KiB at a time: one ``getrandom`` call per request
    was a measurable part of the per-request cost. The buffer is dropped in forked children
    so two workers never hand out the same ids.
    """

    __slots__ = ("_hex", "_offset")

    def __init__(self) -> None:
        self._hex = b""
        self._offset = 0

    def next(self) -> bytes:
        offset = self._offset
        if offset >= len(self._hex):
            self._hex = os.urandom(4096).hex().encode()
            offset = 0
        self._offset = offset + 32
        return self._hex[offset : offset + 32]

    def forget(self) -> None:
        self._hex = b""
        self._offset = 0


_REQUEST_IDS = RequestIds()
os.register_at_fork(after_in_child=_REQUEST_IDS.forget)
new_request_id = _REQUEST_IDS.next
"""32 random hex characters, like nginx's ``$request_id``."""


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

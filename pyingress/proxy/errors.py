"""The small HTML pages the proxy answers with when it cannot forward a request.

Pages name the reason in words and never include addresses or exception text.
"""

from __future__ import annotations

import html
from http import HTTPStatus

from pyingress.proxy.headers import DATE

NOT_FOUND = "no route for this host and path"
NO_ENDPOINTS = "no ready endpoint for this service"
CONNECT_REFUSED = "upstream refused the connection"
UPSTREAM_BROKEN = "upstream closed the connection before a complete response"
UPSTREAM_INVALID = "upstream sent an invalid response"
CONNECT_TIMEOUT = "upstream connect timed out"
READ_TIMEOUT = "upstream read timed out"
SEND_TIMEOUT = "upstream send timed out"
BAD_REQUEST = "malformed request"
HEADERS_TOO_LARGE = "request header fields too large"
INTERNAL = "internal error"


def error_page(status: int, reason: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    title = f"{status} {phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<h1>{title}</h1>\r\n"
        f"<p>{html.escape(reason)}</p>\r\n<hr><address>pyingress</address>\r\n</body>\r\n</html>\r\n"
    ).encode()


def error_response(
    status: int, reason: str, server: bytes, *, head: bool = False, close: bool = False
) -> bytes:
    """A complete HTTP/1.1 response carrying :func:`error_page`."""
    body = error_page(status, reason)
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
        b"server: " + server + b"\r\n",
        DATE.line(),
        b"content-type: text/html; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"cache-control: no-store\r\n",
    ]
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)

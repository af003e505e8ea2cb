"""Request views for filter tests: a request as the proxy would have parsed it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyingress.policy.filters import RequestView, fields_of
from pyingress.proxy.exchange import RequestHead
from pyingress.routing.paths import normalize_path
from pyingress.routing.table import Route


def request_head(
    method: str = "GET",
    target: str = "/",
    host: str = "app.example",
    headers: Iterable[tuple[bytes, bytes]] = (),
    client: str = "192.0.2.7",
    scheme: str = "http",
) -> RequestHead:
    """``method target`` sent to ``host`` with ``headers``, as the client connection parses it."""
    head = RequestHead(method.encode(), target.encode(), normalize_path(target.partition("?")[0]),
                       list(fields_of(headers)), True, True, False, 0.0)  # fmt: skip
    head.host = host
    head.host_header = host.encode()
    head.proto = scheme.encode()
    head.client = head.forwarded_for = client.encode()
    return head


def request_view(route: Route, *args: Any, **kwargs: Any) -> RequestView:
    """The view filters get of :func:`request_head` (same arguments) on ``route``."""
    return RequestView(request_head(*args, **kwargs), route)

"""``custom-headers``: response headers from a ConfigMap, set on every response of the route."""

from __future__ import annotations

from pyingress.policy.filters import Headers, Reply, RequestView


class ResponseHeadersFilter:
    """Sets each configured header, replacing a value the backend sent (filter order 70)."""

    def __init__(self, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.headers = headers
        self._names = frozenset(name.lower() for name, _ in headers)

    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        headers[:] = [(name, value) for name, value in headers if name.lower() not in self._names]
        headers.extend(self.headers)

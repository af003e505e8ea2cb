"""``custom-headers``: response headers from a ConfigMap, set on every response of the route."""

from __future__ import annotations

from pyingress.policy.filters import HeaderBlock, Headers, Reply, RequestView


class ResponseHeadersFilter:
    """Sets each configured header, replacing a value the backend sent (filter order 70)."""

    handles_request = False

    def __init__(self, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.headers = headers
        self._block = HeaderBlock(headers)

    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        request.drop_response_headers(self._block.names)
        request.add_response_block(self._block)

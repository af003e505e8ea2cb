"""``custom-headers``: response headers from a ConfigMap, set on every response of the route."""

from __future__ import annotations

from pyingress.policy.filters import Headers, Reply, RequestView, ResponseEdit


class ResponseHeadersFilter:
    """Sets each configured header, replacing a value the backend sent (filter order 70)."""

    handles_request = False

    def __init__(self, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.headers = headers
        self._edit = ResponseEdit.setting(headers)

    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> ResponseEdit:
        return self._edit

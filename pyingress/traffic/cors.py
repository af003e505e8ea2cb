"""``enable-cors`` and ``cors-*``: preflight answers and response headers, as ingress-nginx.

Only requests whose ``Origin`` is allowed get CORS headers; an ``OPTIONS`` request from an
allowed origin is a preflight and is answered by the proxy with 204.
"""

from __future__ import annotations

from pyingress.policy.filters import Headers, Reply, RequestView
from pyingress.traffic.policy import CorsPolicy

_DONE = "traffic.cors_done"


class OriginMatcher:
    """Exact origins and one-level ``scheme://*.domain[:port]`` wildcards, case-insensitive."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.exact = frozenset(origin for origin in origins if "*." not in origin)
        self.wildcards = tuple(origin.split("*.", 1) for origin in origins if "*." in origin)

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        origin = origin.lower()
        if origin in self.exact:
            return True
        for scheme, suffix in self.wildcards:
            if origin.startswith(scheme) and origin.endswith("." + suffix):
                label = origin[len(scheme) : -len(suffix) - 1]
                if label and "." not in label and "/" not in label and ":" not in label:
                    return True
        return False


class CorsFilter:
    """The run-time side of :class:`CorsPolicy` (filter order 40)."""

    def __init__(self, policy: CorsPolicy) -> None:
        self.policy = policy
        self.origins = OriginMatcher(policy.allow_origins)
        self._common: Headers = [
            (b"Access-Control-Allow-Methods", ", ".join(policy.allow_methods).encode()),
            (b"Access-Control-Allow-Headers", ", ".join(policy.allow_headers).encode()),
        ]
        if policy.allow_credentials:
            self._common.append((b"Access-Control-Allow-Credentials", b"true"))
        if policy.expose_headers:
            exposed = ", ".join(policy.expose_headers).encode()
            self._common.append((b"Access-Control-Expose-Headers", exposed))

    def _headers_for(self, origin: bytes) -> Headers:
        allowed = b"*" if self.origins.any else origin
        headers: Headers = [(b"Access-Control-Allow-Origin", allowed), *self._common]
        if not self.origins.any:
            headers.append((b"Vary", b"Origin"))
        return headers

    async def on_request(self, request: RequestView) -> Reply | None:
        origin = request.header(b"origin")
        if origin is None or not self.origins.allows(origin.decode("latin-1")):
            return None
        if request.method != "OPTIONS":
            return None
        request.state[_DONE] = True
        headers = self._headers_for(origin)
        headers += [
            (b"Access-Control-Max-Age", str(self.policy.max_age).encode()),
            (b"Content-Type", b"text/plain; charset=utf-8"),
        ]
        return Reply(204, headers)

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        if request.state.get(_DONE):
            return
        origin = request.header(b"origin")
        if origin is None or not self.origins.allows(origin.decode("latin-1")):
            return
        headers[:] = [
            (name, value)
            for name, value in headers
            if not name.lower().startswith(b"access-control-")
        ]
        headers.extend(self._headers_for(origin))

"""``enable-cors`` and ``cors-*``: preflight answers and response headers, as ingress-nginx.

Only requests whose ``Origin`` is allowed get CORS headers; an ``OPTIONS`` request from an
allowed origin is a preflight and is answered by the proxy with 204.
"""

from __future__ import annotations

from pyingress.policy.filters import Headers, Reply, RequestView, ResponseEdit
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


MAX_ORIGINS = 256
"""Origins whose decision and headers are kept per filter; past that the cache starts over."""
CORS_RESPONSE_HEADERS = frozenset(
    {
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-expose-headers",
        b"access-control-max-age",
    }
)
"""The upstream's CORS answer, replaced by the route's (the ``Vary`` it sends is kept)."""


class CorsFilter:
    """The run-time side of :class:`CorsPolicy` (filter order 40).

    The response edit for an origin is built once and reused: the decision and the edit
    (drop the upstream's CORS headers, add ours) are cached per ``Origin``.
    """

    def __init__(self, policy: CorsPolicy) -> None:
        self.policy = policy
        self.origins = OriginMatcher(policy.allow_origins)
        common: Headers = [
            (b"Access-Control-Allow-Methods", ", ".join(policy.allow_methods).encode()),
            (b"Access-Control-Allow-Headers", ", ".join(policy.allow_headers).encode()),
        ]
        if policy.allow_credentials:
            common.append((b"Access-Control-Allow-Credentials", b"true"))
        if policy.expose_headers:
            exposed = ", ".join(policy.expose_headers).encode()
            common.append((b"Access-Control-Expose-Headers", exposed))
        self._common = common
        self._preflight: Headers = [
            (b"Access-Control-Max-Age", str(policy.max_age).encode()),
            (b"Content-Type", b"text/plain; charset=utf-8"),
        ]
        self._decided: dict[bytes, ResponseEdit | None] = {}

    def _headers_for(self, origin: bytes) -> Headers:
        allowed = b"*" if self.origins.any else origin
        headers: Headers = [(b"Access-Control-Allow-Origin", allowed), *self._common]
        if not self.origins.any:
            headers.append((b"Vary", b"Origin"))
        return headers

    def _edit_for(self, request: RequestView) -> ResponseEdit | None:
        """The CORS response edit for the request's origin, or None when not allowed."""
        origin = request.header(b"origin")
        if origin is None:
            return None
        decided = self._decided
        try:
            return decided[origin]
        except KeyError:
            pass
        allowed = self.origins.allows(origin.decode("latin-1"))
        made = ResponseEdit(self._headers_for(origin), CORS_RESPONSE_HEADERS) if allowed else None
        if len(decided) >= MAX_ORIGINS:
            decided.clear()
        decided[origin] = made
        return made

    async def on_request(self, request: RequestView) -> Reply | None:
        return self.check(request)

    def check(self, request: RequestView) -> Reply | None:
        if request.method != "OPTIONS":
            return None
        found = self._edit_for(request)
        if found is None:
            return None
        request.state[_DONE] = True
        headers = [(name, value) for _, name, value in found.fields]
        return Reply(204, headers + self._preflight)

    def on_response(
        self, request: RequestView, status: int, headers: Headers
    ) -> ResponseEdit | None:
        if request.state and request.state.get(_DONE):
            return None
        return self._edit_for(request)

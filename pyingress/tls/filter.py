"""The HTTPS redirect and HSTS as a route filter (order 10: before anything else runs).

Plain-HTTP requests to a route whose policy asks for HTTPS get a 308 to the same path and
query on HTTPS; HTTPS responses of hosts with their own certificate get
``Strict-Transport-Security``. ACME challenges never reach here: the proxy answers mounted
apps (``/.well-known/acme-challenge/``) before routing.
"""

from __future__ import annotations

from typing import Any

from pyingress.policy.filters import Headers, Reply, RequestView, ResponseEdit, register_filter
from pyingress.tls.policy import DEFAULT_TLS_POLICY, REDIRECT_STATUS, TLSPolicy, redirect_location

ORDER = 10
HSTS = b"strict-transport-security"


class TLSFilter:
    """Redirect and HSTS for one :class:`TLSPolicy`."""

    __slots__ = ("_hsts", "https_port", "policy")

    def __init__(self, policy: TLSPolicy, https_port: int = 443) -> None:
        self.policy = policy
        self.https_port = https_port
        value = policy.hsts_value
        self._hsts = ResponseEdit(((HSTS, value),)) if value is not None else None

    async def on_request(self, request: RequestView) -> Reply | None:
        return self.check(request)

    def check(self, request: RequestView) -> Reply | None:
        if request.scheme != "http" or not self.policy.redirects_host(request.host):
            return None
        try:
            target = request.target.encode("latin-1")
        except UnicodeEncodeError:
            target = b""
        location = redirect_location(request.host.encode("latin-1", "replace"), target,
                                     self.https_port)  # fmt: skip
        if location is None:
            return Reply(400, [(b"content-type", b"text/plain")], b"bad Host or request target\n")
        return Reply(REDIRECT_STATUS, [(b"location", location)])

    def on_response(
        self, request: RequestView, status: int, headers: Headers
    ) -> ResponseEdit | None:
        hsts = self._hsts
        if hsts is None or request.scheme != "https" or self.policy.hsts_for(request.host) is None:
            return None
        if any(name.lower() == HSTS for name, _ in headers):
            return None  # the application's own HSTS wins
        return hsts


class TLSFilterFactory:
    """Makes the :class:`TLSFilter` of a route policy that has a ``tls`` field asking for one."""

    def __init__(self, https_port: int = 443) -> None:
        self.https_port = https_port

    def __call__(self, policy: Any) -> TLSFilter | None:
        tls: TLSPolicy = getattr(policy, "tls", None) or DEFAULT_TLS_POLICY
        if not (tls.force_ssl_redirect or tls.tls_hosts):
            return None
        return TLSFilter(tls, self.https_port)


def install(https_port: int = 443) -> None:
    """Register the filter once per process (``serve`` calls this with ``--https-port``)."""
    register_filter(ORDER, TLSFilterFactory(https_port))

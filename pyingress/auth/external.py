"""External auth (ingress-nginx ``auth-url``): ask another service whether a request may pass.

Semantics follow ingress-nginx's ``auth_request`` so oauth2-proxy, Authelia and friends work
unchanged: a 2xx answer lets the request through and copies the ``auth-response-headers``
upstream; 401 redirects to ``auth-signin`` when set (else 401 with the service's
``WWW-Authenticate``); 403 is 403; anything else, or no answer, is 500.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

import httpx

from pyingress.auth.policy import ExternalAuth
from pyingress.policy.filters import Reply, RequestView

log = logging.getLogger("pyingress.auth")

TIMEOUT = httpx.Timeout(5.0, connect=2.0)
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
PASSED_HEADERS = (b"cookie", b"authorization", b"accept", b"user-agent", b"accept-language")

ARGS_SAFE = "!\"$'()*,/:<=>@[]^`{|}~"
"""What nginx's ``$escaped_request_uri`` leaves alone: it escapes space # % & + ; ? and
control or non-ASCII bytes (``NGX_ESCAPE_ARGS``)."""
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


class SubrequestClient:
    """One pooled httpx client per process for auth sub-requests (created on first use)."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=TIMEOUT, limits=LIMITS, follow_redirects=False, trust_env=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


SUBREQUESTS = SubrequestClient()


def request_host(request: RequestView) -> str:
    """The Host the client sent (with its port), or the normalised host if it looks odd."""
    raw = (request.header(b"host") or b"").decode("latin-1")
    return raw if raw and set(raw) <= _HOST_CHARS else request.host


def expand(template: str, request: RequestView) -> str:
    """Fill the few nginx variables ingress-nginx users put in ``auth-url``/``auth-signin``."""
    host = request_host(request)
    return (
        template.replace("$escaped_request_uri", quote(request.target, safe=ARGS_SAFE))
        .replace("$request_uri", request.target)
        .replace("$scheme", request.scheme)
        .replace("$http_host", host)
        .replace("$host", request.host)
    )


def signin_location(policy: ExternalAuth, request: RequestView) -> str:
    """``auth-signin`` with ``rd=<scheme>://<host><escaped uri>`` unless it carries one."""
    location = expand(policy.signin, request)
    param = policy.signin_redirect_param
    query = location.partition("?")[2]
    if any(part.partition("=")[0] == param for part in query.split("&")):
        return location
    back = f"{request.scheme}://{request_host(request)}{request.target}"
    joiner = "&" if "?" in location else "?"
    return f"{location}{joiner}{param}={quote(back, safe=':/')}"


def subrequest_headers(request: RequestView) -> dict[str, str]:
    """What the auth service learns about the original request (never its body)."""
    target = request.target
    host = request_host(request)
    forwarded_for = request.header(b"x-forwarded-for")
    request_id = request.header(b"x-request-id")
    headers = {
        "X-Original-URL": f"{request.scheme}://{host}{target}",
        "X-Original-Method": request.method,
        "X-Original-URI": target,
        "X-Auth-Request-Redirect": target,
        "X-Forwarded-Host": host,
        "X-Forwarded-Proto": request.scheme,
        "X-Real-IP": request.client,
        "X-Forwarded-For": (
            f"{forwarded_for.decode('latin-1')}, {request.client}"
            if forwarded_for
            else request.client
        ),
        "X-Request-ID": request_id.decode("latin-1") if request_id else uuid.uuid4().hex,
    }
    for name in PASSED_HEADERS:
        value = request.header(name)
        if value is not None:
            headers[name.decode()] = value.decode("latin-1")
    return headers


class ExternalAuthenticator:
    """Runs the sub-request for one route's ``auth-url`` policy."""

    def __init__(self, policy: ExternalAuth, client: SubrequestClient = SUBREQUESTS) -> None:
        self.policy = policy
        self._client = client
        self._copied = tuple(name.lower().encode() for name in policy.response_headers)

    def strip_copies(self, request: RequestView) -> None:
        """Client-sent copies of the headers the auth service vouches for never pass."""
        for name in self._copied:
            request.remove_header(name)

    async def authenticate(self, request: RequestView) -> Reply | None:
        policy = self.policy
        method = policy.method or request.method
        try:
            answer = await self._client.client.request(
                method, expand(policy.url, request), headers=subrequest_headers(request)
            )
        except httpx.HTTPError as exc:
            log.warning("auth-url unreachable url=%s error=%s", policy.url, type(exc).__name__)
            return Reply(500)
        status = answer.status_code
        if 200 <= status < 300:
            for name in policy.response_headers:
                value = answer.headers.get(name)
                if value is not None:
                    request.set_header(name.encode(), value.encode("latin-1"))
            return None
        if status == 401:
            if policy.signin:
                return Reply(302, [(b"location", signin_location(policy, request).encode())])
            challenge = answer.headers.get("www-authenticate")
            headers = [(b"www-authenticate", challenge.encode("latin-1"))] if challenge else []
            return Reply(401, headers)
        if status == 403:
            return Reply(403)
        log.warning("auth-url answered status=%d url=%s", status, policy.url)
        return Reply(500)

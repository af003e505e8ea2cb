"""The run-time side of :class:`AuthPolicy`: an IP allow-list filter and an auth filter.

The allow-list runs first (order 20). With ``satisfy: any`` it only marks a request from an
allowed network, and the auth filter (order 50) lets such a request through without a login;
otherwise it answers 403 outside the list. The auth filter strips client-sent identity headers
on every route it guards (whether or not the request then authenticates), then runs basic auth,
external auth and OIDC login in that order: all that are configured must pass.
"""

from __future__ import annotations

import ipaddress
import time

from pyingress.auth.basic import BasicAuthenticator
from pyingress.auth.cookies import strip_own_cookies
from pyingress.auth.external import ExternalAuthenticator, request_host
from pyingress.auth.policy import SATISFY_ANY, AuthPolicy, OIDCAuth
from pyingress.auth.provider import ProviderError
from pyingress.auth.runtime import RUNTIME
from pyingress.policy.filters import Headers, Reply, RequestView, ResponseEdit
from pyingress.routing.annotations import Network
from pyingress.routing.policy import RoutePolicy

IDENTITY_HEADERS = (
    b"x-auth-request-user",
    b"x-auth-request-email",
    b"x-auth-request-groups",
    b"x-auth-request-preferred-username",
    b"x-auth-request-access-token",
)
IP_ALLOWED = "auth.ip_allowed"
SET_COOKIES = "auth.set_cookies"
TEXT = (b"content-type", b"text/plain; charset=utf-8")


def refusal(status: int, *headers: tuple[bytes, bytes]) -> Reply:
    words = {401: "Authorization Required", 403: "Forbidden", 503: "Service Unavailable"}
    body = f"{status} {words.get(status, 'Error')}\n".encode()
    return Reply(status, [*headers, TEXT], body)


def client_in(client: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class AllowListFilter:
    """``allowlist-source-range``: 403 outside the list, or (satisfy any) a pass on auth."""

    handles_response = False

    def __init__(self, policy: AuthPolicy) -> None:
        self.networks = policy.allow
        self.only_marks = policy.satisfy == SATISFY_ANY and policy.authenticates

    async def on_request(self, request: RequestView) -> Reply | None:
        return self.check(request)

    def check(self, request: RequestView) -> Reply | None:
        inside = client_in(request.client, self.networks)
        if self.only_marks:
            if inside:
                request.state[IP_ALLOWED] = True
            return None
        return None if inside else refusal(403)

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        return None


class AuthFilter:
    """Authenticates requests to the routes of one auth policy."""

    def __init__(self, policy: AuthPolicy) -> None:
        self.policy = policy
        self.basic = BasicAuthenticator(policy.basic) if policy.basic else None
        self.external = ExternalAuthenticator(policy.external) if policy.external else None
        self.oidc = policy.oidc

    async def on_request(self, request: RequestView) -> Reply | None:
        for name in IDENTITY_HEADERS:
            request.remove_header(name)
        if self.external is not None:
            self.external.strip_copies(request)
        if request.state.get(IP_ALLOWED) or self._skipped(request.path):
            return None
        if self.basic is not None:
            reply = await self._basic(request)
            if reply is not None:
                return reply
        if self.external is not None:
            reply = await self.external.authenticate(request)
            if reply is not None:
                return reply
        if self.oidc is not None:
            return await self._oidc(request, self.oidc)
        return None

    def on_response(
        self, request: RequestView, status: int, headers: Headers
    ) -> ResponseEdit | None:
        cookies = request.state.pop(SET_COOKIES, ())
        if not cookies:
            return None
        return ResponseEdit([(b"set-cookie", cookie) for cookie in cookies], once=True)

    def _skipped(self, path: str) -> bool:
        for prefix in self.policy.skip_paths:
            bare = prefix.rstrip("/")
            if path == bare or path.startswith(bare + "/"):
                return True
        return False

    async def _basic(self, request: RequestView) -> Reply | None:
        assert self.basic is not None
        user = await self.basic.check(request.header(b"authorization"))
        if user is None:
            return refusal(401, (b"www-authenticate", self.basic.challenge))
        if not self.basic.policy.forward_authorization:
            request.remove_header(b"authorization")
        return None

    async def _oidc(self, request: RequestView, policy: OIDCAuth) -> Reply | None:
        service = RUNTIME.oidc
        provider = None if service is None else service.provider_for(policy.client)
        if service is None or provider is None or policy.unavailable:
            return refusal(503)
        cookie_header = request.header(b"cookie")
        session = service.read_session(cookie_header)
        if session is not None and session.client_key != provider.client.key:
            session = None
        now = time.time()
        host = request_host(request)
        secure = request.scheme == "https"
        if session is not None and session.needs_refresh(now):
            refreshed = await service.refresh(session)
            if refreshed is not None:
                session = refreshed
                cookies = service.session_cookies(session, host, secure, cookie_header)
                request.state[SET_COOKIES] = cookies
            elif session.expired(now):
                session = None
        if session is None:
            if not wants_login_page(request):
                return refusal(401)
            back = f"{request.scheme}://{host}{request.target}"
            try:
                location, cookies = await service.begin_login(provider, request.scheme, host, back)
            except ProviderError:
                return refusal(503)
            headers = [(b"location", location.encode()), *((b"set-cookie", c) for c in cookies)]
            return Reply(302, headers)
        if not policy.allows(session.email, session.groups):
            return refusal(403)
        request.set_header(b"X-Auth-Request-User", session.user.encode())
        request.set_header(b"X-Auth-Request-Email", session.email.encode())
        request.set_header(b"X-Auth-Request-Groups", ",".join(session.groups).encode())
        request.set_header(
            b"X-Auth-Request-Preferred-Username", session.preferred_username.encode()
        )
        if policy.pass_access_token:
            request.set_header(b"X-Auth-Request-Access-Token", session.access_token.encode())
        if cookie_header is not None:
            kept = strip_own_cookies(cookie_header)
            request.remove_header(b"cookie")
            if kept:
                request.add_header(b"cookie", kept)
        return None


def wants_login_page(request: RequestView) -> bool:
    """Browsers navigating get the login redirect; APIs, XHR and WebSockets get 401."""
    if request.method not in ("GET", "HEAD") or request.header(b"upgrade") is not None:
        return False
    if (request.header(b"x-requested-with") or b"").lower() == b"xmlhttprequest":
        return False
    return b"text/html" in (request.header(b"accept") or b"")


def auth_of(policy: RoutePolicy) -> AuthPolicy | None:
    auth = getattr(policy, "auth", None)
    return auth if isinstance(auth, AuthPolicy) else None


def allow_list_filter(policy: RoutePolicy) -> AllowListFilter | None:
    auth = auth_of(policy)
    return AllowListFilter(auth) if auth is not None and auth.allow else None


def auth_filter(policy: RoutePolicy) -> AuthFilter | None:
    auth = auth_of(policy)
    return AuthFilter(auth) if auth is not None and auth.authenticates else None

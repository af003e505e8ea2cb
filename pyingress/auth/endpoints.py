"""The ``/oauth2/`` endpoints mounted on the proxy: start, callback, sign_out and auth.

``/oauth2/auth`` answers 202 with the identity headers for a valid session and 401 otherwise,
so another Ingress (or another proxy) can use pyingress's login through ``auth-url``.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pyingress.auth.cookies import STATE_COOKIE
from pyingress.auth.oidc import LoginError, OIDCService
from pyingress.auth.policy import AuthPolicy, OIDCClient
from pyingress.auth.provider import ProviderError
from pyingress.auth.redirects import safe_redirect
from pyingress.routing.paths import normalize_host

log = logging.getLogger("pyingress.auth")


def oauth2_app(service: OIDCService) -> Starlette:
    endpoints = Endpoints(service)
    return Starlette(
        routes=[
            Route("/oauth2/start", endpoints.start, methods=["GET"]),
            Route("/oauth2/callback", endpoints.callback, methods=["GET"]),
            Route("/oauth2/sign_out", endpoints.sign_out, methods=["GET", "POST"]),
            Route("/oauth2/auth", endpoints.auth, methods=["GET", "HEAD"]),
        ]
    )


def _redirect(location: str, cookies: Sequence[bytes] = ()) -> Response:
    headers = {"location": location, "cache-control": "no-store"}
    response = Response(status_code=302, headers=headers)
    for cookie in cookies:
        response.raw_headers.append((b"set-cookie", cookie))
    return response


class Endpoints:
    def __init__(self, service: OIDCService) -> None:
        self.service = service

    def _absolute(self, request: Request, target: str) -> str:
        if target.startswith("/"):
            return f"{request.url.scheme}://{request.headers.get('host', '')}{target}"
        return target

    def _client_for(self, target: str) -> OIDCClient | None:
        """The OIDC client of the route ``target`` points at (its Ingress may override it)."""
        parts = urlsplit(target)
        route = self.service.table.match(parts.netloc, parts.path or "/")
        auth = getattr(route.policy, "auth", None) if route is not None else None
        if isinstance(auth, AuthPolicy) and auth.oidc is not None:
            return auth.oidc.client
        return None

    async def start(self, request: Request) -> Response:
        back = self._absolute(
            request, safe_redirect(request.query_params.get("rd"), self.service.table) or "/"
        )
        provider = self.service.provider_for(self._client_for(back))
        if provider is None:
            return PlainTextResponse("login is not configured\n", status_code=503)
        host = request.headers.get("host", "")
        try:
            location, cookies = await self.service.begin_login(
                provider, request.url.scheme, host, back
            )
        except ProviderError:
            return PlainTextResponse("the login provider is unavailable\n", status_code=503)
        return _redirect(location, cookies)

    async def callback(self, request: Request) -> Response:
        host = request.headers.get("host", "")
        secure = request.url.scheme == "https"
        clear_state = self.service.jar.clear(STATE_COOKIE, host, secure, "/oauth2/")
        cookie_header = request.headers.get("cookie", "").encode("latin-1")
        try:
            session, back = await self.service.finish_login(
                dict(request.query_params), cookie_header
            )
        except LoginError as exc:
            log.info("login refused host=%s reason=%s", normalize_host(host), exc)
            response = PlainTextResponse(
                f"403 Forbidden: {html.escape(str(exc))}\n", status_code=403
            )
            for cookie in clear_state:
                response.raw_headers.append((b"set-cookie", cookie))
            return response
        log.info("login user=%s email=%s", session.user, session.email)
        target = safe_redirect(back, self.service.table) or "/"
        cookies = self.service.session_cookies(session, host, secure, cookie_header)
        return _redirect(target, [*cookies, *clear_state])

    async def sign_out(self, request: Request) -> Response:
        host = request.headers.get("host", "")
        secure = request.url.scheme == "https"
        cookie_header = request.headers.get("cookie", "").encode("latin-1")
        session = self.service.read_session(cookie_header)
        cookies = self.service.clear_session_cookies(host, secure, cookie_header)
        rd = safe_redirect(request.query_params.get("rd"), self.service.table)
        back = self._absolute(request, rd) if rd else ""
        location = back or "/"
        provider = (
            self.service.provider_by_key(session.client_key) if session is not None else None
        ) or self.service.provider_for(None)
        if provider is not None:
            try:
                end = await provider.endpoint("end_session_endpoint")
            except ProviderError:
                end = None
            if end:
                query = {"client_id": provider.client.client_id}
                if back:
                    query["post_logout_redirect_uri"] = back
                location = f"{end}{'&' if '?' in end else '?'}{urlencode(query)}"
        return _redirect(location, cookies)

    async def auth(self, request: Request) -> Response:
        cookie_header = request.headers.get("cookie", "").encode("latin-1")
        session = self.service.read_session(cookie_header)
        if session is None or session.expired(time.time()):
            return PlainTextResponse("401 Authorization Required\n", status_code=401)
        return Response(
            status_code=202,
            headers={
                "X-Auth-Request-User": session.user,
                "X-Auth-Request-Email": session.email,
                "X-Auth-Request-Groups": ",".join(session.groups),
                "X-Auth-Request-Preferred-Username": session.preferred_username,
            },
        )

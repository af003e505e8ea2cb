"""External auth (``auth-url``) against a small Starlette auth service on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.auth.conftest import app_objects
from tests.support.net import free_port, port_open, wait_until

HOST = "app.homelab.test"


@dataclass
class AuthService:
    port: int
    seen: list[dict[str, object]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def auth_app(service: AuthService) -> Starlette:
    async def check(request: Request) -> Response:
        body = await request.body()
        service.seen.append({"method": request.method, "headers": dict(request.headers),
                             "body": body, "path": request.url.path})
        session = request.cookies.get("session")
        if session == "good":
            return PlainTextResponse("ok", headers={"X-Auth-Request-User": "alice",
                                                    "X-Auth-Request-Email": "alice@home.example",
                                                    "X-Not-Listed": "secret-internal"})
        if session == "forbidden":
            return PlainTextResponse("no", status_code=403)
        if session == "broken":
            return PlainTextResponse("oops", status_code=502)
        return PlainTextResponse("who?", status_code=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="homelab"'})

    return Starlette(routes=[Route("/check", check, methods=["GET", "POST", "PUT", "HEAD"])])


@pytest.fixture
def auth_service() -> Iterator[AuthService]:
    service = AuthService(free_port())
    server = uvicorn.Server(uvicorn.Config(auth_app(service), host="127.0.0.1", port=service.port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: port_open(service.port), what="auth service")
        yield service
    finally:
        server.should_exit = True
        thread.join(10)


def annotations(service: AuthService, **extra: str) -> dict[str, str]:
    result = {
        "nginx.ingress.kubernetes.io/auth-url": f"{service.url}/check",
        "nginx.ingress.kubernetes.io/auth-response-headers": "X-Auth-Request-User, X-Auth-Request-Email",
    }
    result.update({f"nginx.ingress.kubernetes.io/{key.replace('_', '-')}": value
                   for key, value in extra.items()})
    return result


def test_allowed_request_gets_listed_headers_only(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    proxy = harness(app_objects(echo_port, HOST, annotations(auth_service)))
    response = proxy.get(HOST, "/dash?x=1", headers={"Cookie": "session=good",
                                                     "X-Auth-Request-User": "mallory",
                                                     "X-Request-ID": "req-42"})
    assert response.status_code == 200
    seen_upstream = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert seen_upstream["x-auth-request-user"] == "alice"
    assert seen_upstream["x-auth-request-email"] == "alice@home.example"
    assert "x-not-listed" not in seen_upstream
    sub = auth_service.seen[-1]
    headers = sub["headers"]
    assert isinstance(headers, dict)
    assert sub["method"] == "GET"
    assert headers["x-original-url"] == f"http://{HOST}/dash?x=1"
    assert headers["x-original-uri"] == "/dash?x=1"
    assert headers["x-original-method"] == "GET"
    assert headers["x-auth-request-redirect"] == "/dash?x=1"
    assert headers["x-forwarded-host"] == HOST
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-request-id"] == "req-42"
    assert headers["cookie"] == "session=good"
    assert "x-auth-request-user" not in headers  # the client's forged copy never travels


def test_forged_identity_header_is_stripped_even_when_auth_adds_none(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    proxy = harness(app_objects(echo_port, HOST, annotations(
        auth_service, auth_response_headers="X-Auth-Request-Email")))
    response = proxy.get(HOST, "/", headers={"Cookie": "session=good", "X-Auth-Request-User": "root"})
    assert response.status_code == 200
    assert "x-auth-request-user" not in {k.lower() for k in response.json()["headers"]}


def test_post_sub_request_carries_method_but_no_body(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    proxy = harness(app_objects(echo_port, HOST, annotations(auth_service)))
    response = httpx.post(proxy.url + "/upload", content=b"payload" * 100,
                          headers={"Host": HOST, "Cookie": "session=good"}, timeout=30)
    assert response.status_code == 200
    assert auth_service.seen[-1]["method"] == "POST"
    assert auth_service.seen[-1]["body"] == b""


def test_auth_method_annotation(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    proxy = harness(app_objects(echo_port, HOST, annotations(auth_service, auth_method="HEAD")))
    assert proxy.get(HOST, "/", headers={"Cookie": "session=good"}).status_code == 200
    assert auth_service.seen[-1]["method"] == "HEAD"


def test_unauthenticated_redirects_to_signin(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    signin = "https://auth.homelab.test/oauth2/start"
    proxy = harness(app_objects(echo_port, HOST, annotations(auth_service, auth_signin=signin)))
    response = proxy.get(HOST, "/a b?x=1&y=2")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == signin
    assert parse_qs(location.query)["rd"] == [f"http://{HOST}/a%20b?x=1&y=2"]


def test_signin_with_own_redirect_param_is_kept(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    signin = "https://auth.homelab.test/start?rd=https://$host$escaped_request_uri"
    proxy = harness(app_objects(echo_port, HOST, annotations(auth_service, auth_signin=signin)))
    response = proxy.get(HOST, "/p?q=1&r")
    assert response.status_code == 302
    assert response.headers["location"] == f"https://auth.homelab.test/start?rd=https://{HOST}/p%3Fq=1%26r"


def test_status_mapping(echo_port, harness, auth_service) -> None:  # type: ignore[no-untyped-def]
    closed = free_port()
    objects = [
        *app_objects(echo_port, HOST, annotations(auth_service)),
        *app_objects(echo_port, "down.test", {
            "nginx.ingress.kubernetes.io/auth-url": f"http://127.0.0.1:{closed}/check"}, name="down"),
    ]
    proxy = harness(objects)
    unauthenticated = proxy.get(HOST)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == 'Bearer realm="homelab"'
    assert proxy.get(HOST, headers={"Cookie": "session=forbidden"}).status_code == 403
    assert proxy.get(HOST, headers={"Cookie": "session=broken"}).status_code == 500
    assert proxy.get("down.test").status_code == 500

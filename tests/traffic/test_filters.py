"""The traffic filters on their own: limits, CORS, redirects, rewrites, response headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyingress.policy.filters import FilterChains, Reply, RequestView
from pyingress.ratelimit import RateLimiter
from pyingress.routing.table import Route
from pyingress.traffic.limits import LimitFilter
from pyingress.traffic.policy import LimitPolicy
from tests.support import manifests as m
from tests.support.views import request_view
from tests.traffic.conftest import compile_objects, nginx, services


def route_for(annotations: dict[str, str], path: str = "/", host: str = "app.example",
              path_type: str = "Prefix", extra: tuple[dict[str, Any], ...] = ()) -> Route:
    result = compile_objects(
        m.ingress("app", [m.rule(host, m.path(path, "web", path_type))], annotations=annotations),
        *services("web"),
        *extra,
    )
    assert not [p for p in result.problems if p.severity == "error"], result.problems
    found = result.table.match(host, path.split("(")[0] or "/")
    assert found is not None
    return found


def view(route: Route, method: str = "GET", target: str = "/", host: str = "app.example",
         headers: list[tuple[bytes, bytes]] | None = None, client: str = "192.0.2.7",
         scheme: str = "http") -> RequestView:
    headers = headers if headers is not None else [(b"Host", host.encode())]
    return request_view(route, method, target, host, headers, client, scheme)


def run(route: Route, request: RequestView) -> tuple[Reply | None, list[tuple[bytes, bytes]]]:
    chain = FilterChains().chain_for(route.policy)
    reply = asyncio.run(chain.on_request(request))
    response: list[tuple[bytes, bytes]] = [(b"Access-Control-Allow-Origin", b"upstream")]
    if reply is None:
        chain.on_response(request, 200, response)
    return reply, response if reply is None else reply.headers


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


def test_rate_limiter_allows_burst_then_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait_time("client") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_time("client") == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.wait_time("client") == 0.0
    slow = RateLimiter(rate=1 / 60, burst=1, clock=lambda: now[0])  # limit-rpm: 1
    assert slow.wait_time("client") == 0.0 and slow.wait_time("client") == pytest.approx(60.0)


def test_limit_filter_answers_503_with_retry_after_and_exempts_allowlist() -> None:
    now = [0.0]
    limiter = LimitFilter(
        LimitPolicy(rps=2, burst_multiplier=1, allowlist=(__import__("ipaddress").ip_network("10.0.0.0/8"),)),
        clock=lambda: now[0],
    )
    route = route_for({})
    replies = [asyncio.run(limiter.on_request(view(route))) for _ in range(3)]
    assert replies[:2] == [None, None]
    assert replies[2] is not None and replies[2].status == 503
    assert header(replies[2].headers, b"retry-after") == b"1"
    assert asyncio.run(limiter.on_request(view(route, client="10.1.2.3"))) is None
    now[0] = 1.0
    assert asyncio.run(limiter.on_request(view(route))) is None


def test_connection_limit_releases_on_response() -> None:
    limiter = LimitFilter(LimitPolicy(connections=1))
    route = route_for({})
    first = view(route)
    assert asyncio.run(limiter.on_request(first)) is None
    assert asyncio.run(limiter.on_request(view(route))) is not None
    limiter.on_response(first, 200, [])
    assert asyncio.run(limiter.on_request(view(route))) is None


def test_cors_preflight_and_response_headers() -> None:
    route = route_for(nginx(enable_cors="true", cors_allow_origin="https://*.example.org"))
    origin = [(b"Host", b"app.example"), (b"Origin", b"https://ui.example.org")]
    reply, headers = run(route, view(route, "OPTIONS", headers=origin))
    assert reply is not None and reply.status == 204
    assert header(headers, b"access-control-allow-origin") == b"https://ui.example.org"
    assert header(headers, b"access-control-max-age") == b"1728000"
    reply, headers = run(route, view(route, "GET", headers=origin))
    assert reply is None
    assert [v for k, v in headers if k == b"Access-Control-Allow-Origin"] == [b"https://ui.example.org"]
    two_levels = [(b"Host", b"app.example"), (b"Origin", b"https://a.b.example.org")]
    reply, headers = run(route, view(route, "OPTIONS", headers=two_levels))
    assert reply is None and header(headers, b"access-control-allow-origin") == b"upstream"


def test_cors_replaces_the_upstreams_cors_headers_and_keeps_its_vary() -> None:
    route = route_for(nginx(enable_cors="true", cors_allow_origin="https://ui.example.org"))
    chain = FilterChains().chain_for(route.policy)
    request = view(route, headers=[(b"Host", b"app.example"), (b"Origin", b"https://ui.example.org")])
    response = [(b"Vary", b"Accept-Encoding"), (b"Access-Control-Max-Age", b"5"),
                (b"Access-Control-Allow-Origin", b"*"), (b"ETag", b'"1"')]  # fmt: skip
    assert asyncio.run(chain.on_request(request)) is None
    chain.on_response(request, 200, response)
    assert [v for k, v in response if k.lower() == b"vary"] == [b"Accept-Encoding", b"Origin"]
    assert [v for k, v in response if k.lower() == b"access-control-allow-origin"] == [
        b"https://ui.example.org"
    ]
    assert header(response, b"access-control-max-age") is None  # the upstream's CORS answer goes
    assert header(response, b"etag") == b'"1"'


def test_permanent_redirect_and_app_root() -> None:
    route = route_for(nginx(permanent_redirect="https://new.example/docs", permanent_redirect_code="308"))
    reply, headers = run(route, view(route, target="/anything"))
    assert reply is not None and reply.status == 308
    assert header(headers, b"location") == b"https://new.example/docs"
    root = route_for(nginx(app_root="/app1"))
    reply, headers = run(root, view(root, headers=[(b"Host", b"app.example:8080")]))
    assert reply is not None and reply.status == 302
    assert header(headers, b"location") == b"http://app.example:8080/app1"
    assert run(root, view(root, target="/other"))[0] is None


def test_rewrite_target_with_groups_keeps_query() -> None:
    route = route_for(nginx(rewrite_target="/$2"), path="/something(/|$)(.*)",
                      path_type="ImplementationSpecific")
    request = view(route, target="/something/new/x?a=1")
    assert run(route, request)[0] is None
    assert request.target == "/new/x?a=1"
    bare = view(route, target="/something")
    run(route, bare)
    assert bare.target == "/"


def test_forwarded_prefix_vhost_and_custom_headers() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "h", "namespace": "default"}, "data": {"X-Team": "blue"}}
    route = route_for(nginx(x_forwarded_prefix="/api", upstream_vhost="internal.svc",
                            custom_headers="h"), extra=(config_map,))
    request = view(route)
    reply, headers = run(route, request)
    assert reply is None
    assert request.header(b"x-forwarded-prefix") == b"/api"
    assert request.header(b"host") == b"internal.svc"
    assert header(headers, b"x-team") == b"blue"

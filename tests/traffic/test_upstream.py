"""Endpoint choice, canary attachment, regex hosts and the other compile passes."""

from __future__ import annotations

import random
from collections import Counter

from pyingress.proxy.balancer import RoundRobin
from pyingress.routing.table import Endpoint
from pyingress.traffic.balance import HashRing, PeakEwma, endpoint_key
from pyingress.traffic.canary import wants_canary
from pyingress.traffic.policy import CanaryRule, UpstreamPolicy
from pyingress.traffic.upstream import BodyLimit, RequestFacts, UpstreamChooser, may_retry
from tests.support import manifests as m
from tests.traffic.conftest import compile_objects, nginx, services

ENDPOINTS = tuple(Endpoint(f"10.0.0.{n}", 8080) for n in range(1, 6))


def facts(headers: dict[bytes, bytes] | None = None, client: str = "192.0.2.1",
          target: str = "/") -> RequestFacts:
    values = headers or {}
    return RequestFacts(values.get, client, "app.example", target.partition("?")[0], target)


def test_hash_ring_is_stable_and_moves_few_keys_when_an_endpoint_is_added() -> None:
    ring = HashRing(ENDPOINTS)
    keys = [f"user-{n}".encode() for n in range(2000)]
    before = {key: ring.pick(key) for key in keys}
    assert before == {key: HashRing(ENDPOINTS).pick(key) for key in keys}
    assert len(set(before.values())) == 5
    grown = HashRing((*ENDPOINTS, Endpoint("10.0.0.9", 8080)))
    moved = sum(1 for key in keys if grown.pick(key) != before[key])
    assert moved < len(keys) * 0.3


def test_peak_ewma_prefers_the_faster_endpoint() -> None:
    now = [0.0]
    ewma = PeakEwma(clock=lambda: now[0], rng=random.Random(1))
    slow, fast = ENDPOINTS[:2]
    for _ in range(20):
        for endpoint, latency in ((slow, 0.5), (fast, 0.01)):
            ewma.started(endpoint)
            now[0] += 0.01
            ewma.finished(endpoint, latency)
    picks = Counter(ewma.pick((slow, fast)) for _ in range(200))
    assert picks[fast] == 200


def test_canary_precedence_header_cookie_weight() -> None:
    rule = CanaryRule(by_header="x-canary", by_cookie="canary", weight=30)
    never = lambda: 0.99  # noqa: E731
    assert wants_canary(rule, {b"x-canary": b"always"}.get, never)
    assert not wants_canary(rule, {b"x-canary": b"never", b"cookie": b"canary=always"}.get, never)
    assert wants_canary(rule, {b"cookie": b"a=1; canary=always"}.get, never)
    assert not wants_canary(rule, {}.get, never)
    assert wants_canary(rule, {}.get, lambda: 0.1)
    valued = CanaryRule(by_header="x-v", by_header_value="v2")
    assert wants_canary(valued, {b"x-v": b"v2"}.get, never)
    assert not wants_canary(valued, {b"x-v": b"always"}.get, never)


def test_body_limit_and_retry_rules() -> None:
    limit = BodyLimit(10)
    assert limit.declared_ok(10) and not limit.declared_ok(11) and limit.declared_ok(None)
    assert limit.feed(6) and not limit.feed(6)
    policy = UpstreamPolicy(next_upstream_tries=2)
    assert may_retry(policy, 1, sent_anything=False, method="POST")
    assert not may_retry(policy, 2, sent_anything=False, method="GET")
    assert not may_retry(policy, 1, sent_anything=True, method="GET")


def canary_table(canary_annotations: dict[str, str]):  # type: ignore[no-untyped-def]
    main = m.ingress("main", [m.rule("app.example", m.path("/", "stable"))],
                     created="2024-01-01T00:00:00Z")
    canary = m.ingress("canary", [m.rule("app.example", m.path("/", "preview"))],
                       annotations=nginx(canary="true", **canary_annotations),
                       created="2023-01-01T00:00:00Z")
    return compile_objects(main, canary, *services("stable", "preview"))


def test_canary_attaches_to_the_main_route_even_when_older() -> None:
    result = canary_table({"canary_weight": "30"})
    assert not result.problems
    route = result.table.match("app.example", "/")
    assert route is not None and route.backend.service == "default/stable:80"
    assert route.policy.traffic is not None and route.policy.traffic.split is not None
    assert route.policy.traffic.split.backend.service == "default/preview:80"
    chooser = UpstreamChooser(RoundRobin(), rng=random.Random(7).random)
    picks = Counter(chooser.choose(route, facts()).backend.service for _ in range(1000))  # type: ignore[union-attr]
    assert 240 <= picks["default/preview:80"] <= 360


def test_canary_without_main_is_reported() -> None:
    canary = m.ingress("canary", [m.rule("solo.example", m.path("/", "preview"))],
                       annotations=nginx(canary="true"))
    result = compile_objects(canary, *services("preview"))
    assert [p.reason for p in result.problems] == ["CanaryWithoutMain"]
    assert result.table.match("solo.example", "/") is None


def test_sticky_cookie_names_an_endpoint_and_survives_a_new_endpoint() -> None:
    ingress = m.ingress("app", [m.rule("app.example", m.path("/", "web"))],
                        annotations=nginx(affinity="cookie", session_cookie_samesite="Lax"))
    route = compile_objects(ingress, *services("web", addresses=3)).table.match("app.example", "/")
    assert route is not None
    chooser = UpstreamChooser(RoundRobin())
    first = chooser.choose(route, facts())
    assert first is not None and first.set_cookie is not None
    assert first.set_cookie.startswith(b"INGRESSCOOKIE=" + endpoint_key(first.endpoint).encode())
    assert b"Path=/" in first.set_cookie and b"SameSite=Lax" in first.set_cookie
    cookie = first.set_cookie.split(b";")[0]
    grown = compile_objects(ingress, *services("web", addresses=4)).table.match("app.example", "/")
    assert grown is not None
    for _ in range(20):
        again = chooser.choose(grown, facts({b"cookie": cookie}))
        assert again is not None and again.endpoint == first.endpoint and again.set_cookie is None


def test_hash_by_header_is_consistent_and_retry_skips_tried() -> None:
    ingress = m.ingress("app", [m.rule("app.example", m.path("/", "web"))],
                        annotations=nginx(upstream_hash_by="$http_x_user"))
    route = compile_objects(ingress, *services("web", addresses=5)).table.match("app.example", "/")
    assert route is not None
    chooser = UpstreamChooser(RoundRobin())
    users = [{b"x-user": f"u{n}".encode()} for n in range(50)]
    picks = [chooser.choose(route, facts(user)) for user in users]
    assert picks == [chooser.choose(route, facts(user)) for user in users]
    first = picks[0]
    assert first is not None
    other = chooser.choose(route, facts(users[0]), tried=frozenset({first.endpoint}))
    assert other is not None and other.endpoint != first.endpoint
    assert chooser.choose(route, facts(), tried=frozenset(route.backend.endpoints)) is None


def regex_table():  # type: ignore[no-untyped-def]
    literal = m.ingress("literal", [m.rule("api.example", m.path("/foo/bar/bar", "literal"),
                                           m.path("/exact", "literal", "Exact"))])
    regex = m.ingress("regex", [m.rule("api.example",
                                       m.path("/foo/bar/[A-Z0-9]{3}", "regex", "ImplementationSpecific"))],
                      annotations=nginx(use_regex="true"))
    other = m.ingress("other", [m.rule("plain.example", m.path("/foo", "literal"))])
    return compile_objects(literal, regex, other, *services("literal", "regex"))


def test_regex_host_uses_nginx_location_order() -> None:
    result = regex_table()
    assert not result.problems
    table = result.table

    def service(host: str, path: str) -> str | None:
        route = table.match(host, path)
        return route.backend.service if route else None

    assert service("api.example", "/foo/bar/bar") == "default/regex:80"  # longer regex first
    assert service("api.example", "/FOO/bar/abc") == "default/regex:80"  # case-insensitive
    assert service("api.example", "/foo/bar/bar/x") == "default/regex:80"
    assert service("api.example", "/foo/bar/barx") == "default/regex:80"  # regexes are prefixes
    assert service("api.example", "/exact") == "default/literal:80"
    assert service("plain.example", "/foo/x") == "default/literal:80"
    assert service("plain.example", "/foox") is None


def test_bad_path_regex_is_reported_and_skipped() -> None:
    bad = m.ingress("bad", [m.rule("r.example", m.path("/x(", "web", "ImplementationSpecific"),
                                   m.path("/ok", "web"))],
                    annotations=nginx(use_regex="true"))
    result = compile_objects(bad, *services("web"))
    assert [p.reason for p in result.problems] == ["InvalidPathRegex"]
    assert result.table.match("r.example", "/ok") is not None


def test_www_alias_and_service_upstream() -> None:
    ingress = m.ingress("site", [m.rule("www.site.example", m.path("/", "web"))],
                        annotations=nginx(from_to_www_redirect="true", service_upstream="true"))
    table = compile_objects(ingress, *services("web")).table
    alias = table.match("site.example", "/")
    assert alias is not None and alias.host == "www.site.example"
    assert alias.backend.endpoints == (Endpoint("10.96.0.10", 80),)

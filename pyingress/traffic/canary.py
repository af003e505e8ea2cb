"""Canary Ingresses: attach a canary's backend to the main route, and decide per request.

ingress-nginx semantics: a second Ingress for the same host and path with ``canary: "true"``
is not a conflict but an alternative backend. A request goes to the canary when its
``canary-by-header`` is ``always`` (or equals ``canary-by-header-value``, or matches
``canary-by-header-pattern``), else when its ``canary-by-cookie`` cookie is ``always``, else
with probability ``canary-weight / canary-weight-total``. ``never`` sends it to the main route.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from pyingress.model import Problem, Severity
from pyingress.routing.table import HostRoutes, Route
from pyingress.traffic.policy import CanaryRule, CanarySplit, TrafficPolicy

HeaderLookup = Callable[[bytes], bytes | None]


def cookie_value(cookie_header: bytes | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, if present."""
    if not cookie_header:
        return None
    wanted = name.encode("latin-1")
    for item in cookie_header.split(b";"):
        key, _, value = item.strip().partition(b"=")
        if key == wanted:
            return value.strip(b'"').decode("latin-1")
    return None


def wants_canary(rule: CanaryRule, header: HeaderLookup, rng: Callable[[], float]) -> bool:
    """Whether this request goes to the canary; ``header`` looks up a lower-case name."""
    if rule.by_header:
        value = header(rule.by_header.encode("latin-1"))
        if value is not None:
            text = value.decode("latin-1")
            if rule.by_header_value or rule.by_header_pattern is not None:
                if rule.by_header_value and text == rule.by_header_value:
                    return True
                if rule.by_header_pattern is not None and rule.by_header_pattern.search(text):
                    return True
            elif text == "always":
                return True
            elif text == "never":
                return False
    if rule.by_cookie:
        value_text = cookie_value(header(b"cookie"), rule.by_cookie)
        if value_text == "always":
            return True
        if value_text == "never":
            return False
    if rule.weight <= 0:
        return False
    if rule.weight >= rule.weight_total:
        return True
    return rng() * rule.weight_total < rule.weight


def choose_backend_route(
    route: Route, header: HeaderLookup, rng: Callable[[], float] = random.random
) -> bool:
    """True when ``route`` has a canary and this request should use it."""
    traffic = route.policy.traffic
    split = traffic.split if traffic is not None else None
    return split is not None and wants_canary(split.rule, header, rng)


def is_canary(route: Route) -> bool:
    traffic = route.policy.traffic
    return traffic is not None and traffic.canary is not None


def attach(routes: HostRoutes, canary: Route, problems: list[Problem]) -> HostRoutes:
    """``routes`` with ``canary`` attached to its main route (rebuilt; tables are immutable)."""
    main = next(
        (
            route
            for route in routes.routes()
            if route.path == canary.path
            and route.path_type is canary.path_type
            and not is_canary(route)
        ),
        None,
    )
    what = f"{canary.host or '*'}{canary.path}"
    if main is None:
        problems.append(
            Problem(
                canary.ingress,
                "CanaryWithoutMain",
                f"canary for {what} has no main Ingress with the same host and path; "
                "it receives no traffic",
                Severity.WARNING,
            )
        )
        return routes
    traffic = main.policy.traffic or TrafficPolicy()
    if traffic.split is not None:
        problems.append(
            Problem(
                canary.ingress,
                "CanaryConflict",
                f"{what} already has canary {traffic.split.ingress.namespaced_name}; "
                "only one canary per path is used",
                Severity.WARNING,
            )
        )
        return routes
    rule = canary.policy.traffic.canary if canary.policy.traffic else None
    assert rule is not None
    split = CanarySplit(rule, canary.backend, canary.ingress)
    policy = replace(main.policy, traffic=replace(traffic, split=split))
    return rebuild(routes, {main: replace(main, policy=policy)})


def rebuild(routes: HostRoutes, changed: dict[Route, Route]) -> HostRoutes:
    """A copy of ``routes`` with some routes swapped for new ones."""
    fresh = HostRoutes()
    for route in routes.routes():
        if route is routes.default:
            continue
        fresh.add(changed.get(route, route))
    if routes.default is not None:
        fresh.default = changed.get(routes.default, routes.default)
    return fresh

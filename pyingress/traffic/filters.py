"""Registers the traffic filters with :mod:`pyingress.policy`; the server imports this once."""

from __future__ import annotations

from pyingress.policy.filters import Filter, register_filter
from pyingress.routing.policy import RoutePolicy
from pyingress.traffic.cors import CorsFilter
from pyingress.traffic.headers import ResponseHeadersFilter
from pyingress.traffic.limits import LimitFilter
from pyingress.traffic.rewrite import RewriteFilter

LIMITS_ORDER = 30
CORS_ORDER = 40
REWRITE_ORDER = 60
HEADERS_ORDER = 70


def _limits(policy: RoutePolicy) -> Filter | None:
    traffic = policy.traffic
    return LimitFilter(traffic.limits) if traffic and traffic.limits else None


def _cors(policy: RoutePolicy) -> Filter | None:
    traffic = policy.traffic
    return CorsFilter(traffic.cors) if traffic and traffic.cors else None


def _rewrite(policy: RoutePolicy) -> Filter | None:
    traffic = policy.traffic
    if traffic is None:
        return None
    wanted = (
        traffic.redirect
        or traffic.app_root
        or traffic.from_to_www
        or traffic.rewrite
        or traffic.x_forwarded_prefix
        or traffic.upstream_vhost
    )
    return RewriteFilter(traffic) if wanted else None


def _headers(policy: RoutePolicy) -> Filter | None:
    traffic = policy.traffic
    if traffic and traffic.response_headers:
        return ResponseHeadersFilter(traffic.response_headers)
    return None


register_filter(LIMITS_ORDER, _limits)
register_filter(CORS_ORDER, _cors)
register_filter(REWRITE_ORDER, _rewrite)
register_filter(HEADERS_ORDER, _headers)

"""Per-route request filters: the one mechanism every annotation-driven behaviour plugs into.

The compiler turns annotations into a frozen, typed :class:`~pyingress.routing.table.RoutePolicy`
(pure data). At run time the proxy asks :class:`FilterChains` for the chain of a route's policy;
each concern (TLS redirect and HSTS, auth, allow-lists, rate limits, CORS, rewrites, headers)
contributes a :class:`Filter` through a factory registered here. Routes with the default policy
take the fast path and never touch this module.
"""

from pyingress.policy.filters import (
    Filter,
    FilterChain,
    FilterChains,
    FilterFactory,
    Reply,
    RequestView,
    register_filter,
)

__all__ = [
    "Filter",
    "FilterChain",
    "FilterChains",
    "FilterFactory",
    "Reply",
    "RequestView",
    "register_filter",
]

"""The filter protocol, the chain that runs filters in order, and the factory registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyingress.model import ObjectRef
from pyingress.routing.policy import DEFAULT_POLICY, RoutePolicy
from pyingress.routing.table import Route

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestView:
    """What filters see of a request, and may change before it is forwarded.

    ``headers`` are the client's request headers (names as sent); filters add, replace or strip
    entries, and the proxy forwards the result (after its own hop-by-hop and forwarded-header
    handling). ``target`` is the request target sent upstream; a rewrite changes it.
    """

    method: str
    target: str
    path: str
    """The normalised path the route was matched with (no query)."""
    query: str
    host: str
    """Normalised host (lower case, no port)."""
    scheme: str
    client: str
    """The client address, as trusted-proxy settings define it."""
    headers: Headers
    route: Route
    response_headers: Headers = field(default_factory=list)
    """Headers every filter wants on the response (HSTS, CORS, cookies)."""
    state: dict[str, Any] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        """The first value of a request header (``name`` lower-case)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def remove_header(self, name: bytes) -> None:
        self.headers[:] = [(key, value) for key, value in self.headers if key.lower() != name]

    def set_header(self, name: bytes, value: bytes) -> None:
        self.remove_header(name.lower())
        self.headers.append((name, value))


@dataclass(slots=True)
class Reply:
    """A response made by the proxy itself (redirect, 401, 403, 429/503, preflight)."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class Filter(Protocol):
    """One concern's behaviour for one route policy.

    ``on_request`` runs before the request is forwarded: return a :class:`Reply` to answer at
    the proxy, or None to continue (after editing the request). ``on_response`` may add or
    change response headers from the upstream (or from a Reply).
    """

    async def on_request(self, request: RequestView) -> Reply | None: ...

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None: ...


FilterFactory = Callable[[RoutePolicy], "Filter | None"]
"""Makes the filter a policy asks for, or None when the policy does not involve its concern."""

_FACTORIES: list[tuple[int, FilterFactory]] = []


def register_filter(order: int, factory: FilterFactory) -> None:
    """Add a concern's factory; chains run filters by ascending ``order``.

    Orders in use: 10 TLS redirect/HSTS, 20 IP allow-lists, 30 rate and connection limits,
    40 CORS preflight, 50 authentication, 60 redirects and rewrites, 70 header edits.
    """
    _FACTORIES.append((order, factory))
    _FACTORIES.sort(key=lambda item: item[0])


class FilterChain:
    """The filters of one policy, in order."""

    __slots__ = ("filters",)

    def __init__(self, filters: tuple[Filter, ...]) -> None:
        self.filters = filters

    async def on_request(self, request: RequestView) -> Reply | None:
        for item in self.filters:
            reply = await item.on_request(request)
            if reply is not None:
                for response_filter in self.filters:
                    response_filter.on_response(request, reply.status, reply.headers)
                return reply
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        for item in self.filters:
            item.on_response(request, status, headers)


EMPTY_CHAIN = FilterChain(())


class FilterChains:
    """Filter chains by Ingress and policy, reused across tables while both stay equal.

    Keeping the same filter objects for an unchanged policy keeps their state (rate-limit
    buckets, caches) across route-table reloads; keying by Ingress as well keeps two Ingresses
    with identical annotations from sharing that state.
    """

    def __init__(self, factories: list[tuple[int, FilterFactory]] | None = None) -> None:
        self._factories = factories if factories is not None else _FACTORIES
        self._chains: dict[tuple[ObjectRef | None, RoutePolicy], FilterChain] = {}

    def chain_for(self, policy: RoutePolicy, ingress: ObjectRef | None = None) -> FilterChain:
        """The chain for ``policy`` as used by ``ingress`` (the proxy always names it)."""
        if policy is DEFAULT_POLICY:
            return EMPTY_CHAIN
        key = (ingress, policy)
        chain = self._chains.get(key)
        if chain is None:
            filters = tuple(
                made for _, factory in self._factories if (made := factory(policy)) is not None
            )
            chain = self._chains[key] = FilterChain(filters) if filters else EMPTY_CHAIN
        return chain

    def retain(self, routes: Iterable[Route]) -> None:
        """Forget the chains no route uses any more (call after a table swap)."""
        keep = {(route.ingress, route.policy) for route in routes}
        for key in list(self._chains):
            if key not in keep:
                del self._chains[key]

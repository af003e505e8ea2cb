"""The compiled route table: immutable, and built for one lookup per request.

Lookup cost does not grow with the number of Ingresses: hosts are found with a dict (exact
names) or a dict keyed by parent domain (``*.`` wildcards), and paths with a dict (Exact) and a
trie of path segments (Prefix). The data plane reads :attr:`TableHolder.table` once per request;
publishing a new table is a single reference swap.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pyingress.model import ObjectRef
from pyingress.routing.paths import normalize_host, split_segments
from pyingress.routing.policy import DEFAULT_POLICY, RoutePolicy


class PathType(enum.StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"
    DEFAULT = "DefaultBackend"
    """Not a pathType: marks a route made from an Ingress's ``defaultBackend``."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address to send requests to: a ready pod IP, or an ExternalName."""

    address: str
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )


@dataclass(frozen=True, slots=True)
class Backend:
    """A Service port and the endpoints behind it at compile time.

    ``endpoints`` empty means the Service exists but nothing is ready (503); ``unavailable``
    explains in a few words why, for the error page and the logs.
    """

    service: str
    """``namespace/name:port``, the key the balancer and the metrics use."""
    endpoints: tuple[Endpoint, ...]
    unavailable: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """One ``host`` + ``path`` rule of one Ingress, resolved to its backend."""

    ingress: ObjectRef
    host: str
    """Normalised host; ``*.example.com`` for wildcards; empty for host-less rules."""
    path: str
    path_type: PathType
    backend: Backend
    policy: RoutePolicy = DEFAULT_POLICY

    @property
    def ingress_name(self) -> str:
        return self.ingress.namespaced_name


class _PrefixNode:
    __slots__ = ("children", "route")

    def __init__(self) -> None:
        self.children: dict[str, _PrefixNode] = {}
        self.route: Route | None = None


class HostRoutes:
    """The paths served for one host: Exact paths, a Prefix trie and a fallback route."""

    __slots__ = ("_exact", "_prefix_root", "default")

    def __init__(self) -> None:
        self._exact: dict[str, Route] = {}
        self._prefix_root = _PrefixNode()
        self.default: Route | None = None

    def add(self, route: Route) -> Route | None:
        """Add ``route`` unless its path is taken; then return the route that keeps it."""
        if route.path_type is PathType.EXACT:
            existing = self._exact.get(route.path)
            if existing is None:
                self._exact[route.path] = route
            return existing
        node = self._prefix_root
        for segment in split_segments(route.path):
            node = node.children.setdefault(segment, _PrefixNode())
        if node.route is not None:
            return node.route
        node.route = route
        return None

    def match(self, path: str) -> Route | None:
        """The Exact route for ``path``, else the longest Prefix match, else the fallback."""
        route = self._exact.get(path)
        if route is not None:
            return route
        node = self._prefix_root
        best = node.route
        for segment in split_segments(path):
            child = node.children.get(segment)
            if child is None:
                break
            node = child
            if node.route is not None:
                best = node.route
        return best if best is not None else self.default

    def routes(self) -> Iterator[Route]:
        yield from self._exact.values()
        stack = [self._prefix_root]
        while stack:
            node = stack.pop()
            if node.route is not None:
                yield node.route
            stack.extend(node.children[key] for key in sorted(node.children, reverse=True))
        if self.default is not None:
            yield self.default


@dataclass(frozen=True, slots=True)
class TLSHost:
    """A host listed under an Ingress's ``tls:`` section."""

    host: str
    secret: ObjectRef | None
    ingress: ObjectRef


@dataclass(slots=True)
class RouteTable:
    """Every route the controller serves, ready for lookup by host and path."""

    exact_hosts: dict[str, HostRoutes] = field(default_factory=dict)
    wildcard_hosts: dict[str, HostRoutes] = field(default_factory=dict)
    """Keyed by the parent domain: ``*.example.com`` is stored under ``example.com``."""
    any_host: HostRoutes | None = None
    """Host-less rules; its fallback is the cluster-wide catch-all ``defaultBackend``."""
    tls_hosts: dict[str, TLSHost] = field(default_factory=dict)
    """Hosts listed under ``tls:``, by normalised name (wildcards as ``*.example.com``)."""
    served: set[ObjectRef] = field(default_factory=set)
    """Every Ingress this controller serves (owned by its class and valid)."""
    generation: int = 0

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request, or None (404).

        ``host`` is the raw Host header value (any case, maybe with a port); ``path`` the
        normalised URL path without the query (see :func:`pyingress.routing.paths.normalize_path`).
        """
        name = normalize_host(host)
        routes = self.exact_hosts.get(name)
        if routes is None:
            dot = name.find(".")
            if dot > 0:
                routes = self.wildcard_hosts.get(name[dot + 1 :])
            if routes is None:
                routes = self.any_host
                if routes is None:
                    return None
        return routes.match(path)

    def host_routes(self) -> Iterator[tuple[str, HostRoutes]]:
        """Every host and its routes, sorted; host-less rules last under ``*``."""
        for name in sorted(self.exact_hosts):
            yield name, self.exact_hosts[name]
        for parent in sorted(self.wildcard_hosts):
            yield f"*.{parent}", self.wildcard_hosts[parent]
        if self.any_host is not None:
            yield "*", self.any_host

    def routes(self) -> Iterable[Route]:
        for _, routes in self.host_routes():
            yield from routes.routes()

    def backends(self) -> set[Backend]:
        return {route.backend for route in self.routes()}


class TableHolder:
    """Holds the live table; the data plane reads ``table``, the controller calls ``publish``."""

    __slots__ = ("table",)

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table if table is not None else RouteTable()

    def publish(self, table: RouteTable) -> None:
        self.table = table

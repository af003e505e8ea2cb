"""The compiler's traffic post-pass: canaries, regex hosts, www aliases, service-upstream.

These need the whole table (a canary attaches to another Ingress's route; one regex Ingress
changes matching for its whole host), so they run once after every Ingress has been applied.
The compiler calls :meth:`TrafficPass.take` for each Ingress's routes before applying them,
and :meth:`TrafficPass.finish` at the end.
"""

from __future__ import annotations

from dataclasses import replace

from pyingress.model import Problem, Severity, Snapshot
from pyingress.routing.table import Backend, Endpoint, HostRoutes, Route, RouteTable
from pyingress.traffic import canary
from pyingress.traffic.regex import RegexHostRoutes, uses_regex


class TrafficPass:
    """Collects canary routes while the compiler applies Ingresses, then finishes the table."""

    def __init__(self, snapshot: Snapshot, ssl_passthrough: bool = False) -> None:
        self.snapshot = snapshot
        self.ssl_passthrough = ssl_passthrough
        self.canaries: list[Route] = []

    def take(self, routes: list[Route]) -> list[Route]:
        """The routes to apply now; canary routes are held back for :meth:`finish`."""
        if not any(canary.is_canary(route) for route in routes):
            return routes
        self.canaries.extend(route for route in routes if canary.is_canary(route))
        return [route for route in routes if not canary.is_canary(route)]

    def finish(self, table: RouteTable) -> list[Problem]:
        problems: list[Problem] = []
        if not self.ssl_passthrough:
            self._passthrough_disabled(table, problems)
        self._service_upstream(table, problems)
        for route in self.canaries:
            key, routes = _slot(table, route.host)
            attached = canary.attach(routes or HostRoutes(), route, problems)
            if routes is not None:
                _store(table, key, attached)
        self._www_aliases(table)
        self._regex_hosts(table, problems)
        return problems

    @staticmethod
    def _passthrough_disabled(table: RouteTable, problems: list[Problem]) -> None:
        """``ssl-passthrough`` needs ``--enable-ssl-passthrough``, as in ingress-nginx."""
        flagged = {
            route.ingress
            for route in table.routes()
            if route.policy.traffic is not None and route.policy.traffic.ssl_passthrough
        }
        for ingress in sorted(flagged, key=str):
            problems.append(
                Problem(
                    ingress,
                    "SSLPassthroughDisabled",
                    "ssl-passthrough is ignored: start pyingress serve with "
                    "--enable-ssl-passthrough to relay its TLS to the backend; until then "
                    "pyingress terminates TLS for its hosts",
                    Severity.WARNING,
                )
            )

    def _service_upstream(self, table: RouteTable, problems: list[Problem]) -> None:
        for name, routes in list(table.host_routes()):
            changed = {}
            for route in routes.routes():
                traffic = route.policy.traffic
                if traffic is not None and traffic.upstream.service_upstream:
                    backend = self._cluster_ip(route, problems)
                    if backend is not route.backend:
                        changed[route] = replace(route, backend=backend)
            if changed:
                _store(table, _key(name), canary.rebuild(routes, changed))

    def _cluster_ip(self, route: Route, problems: list[Problem]) -> Backend:
        """``service-upstream``: one endpoint, the Service's ClusterIP and service port."""
        namespace, _, rest = route.backend.service.partition("/")
        name, _, port = rest.rpartition(":")
        service = self.snapshot.get("Service", namespace, name)
        spec = (service or {}).get("spec") or {}
        cluster_ip = str(spec.get("clusterIP") or "")
        number = next(
            (
                int(item.get("port") or 0)
                for item in spec.get("ports") or []
                if str(item.get("port")) == port or item.get("name") == port
            ),
            0,
        )
        if not cluster_ip or cluster_ip == "None" or not number:
            problems.append(
                Problem(
                    route.ingress,
                    "NoClusterIP",
                    f"service-upstream: Service {namespace}/{name} has no ClusterIP and port; "
                    "requests go to its endpoints",
                    Severity.WARNING,
                )
            )
            return route.backend
        return Backend(route.backend.service, (Endpoint(cluster_ip, number),))

    @staticmethod
    def _www_aliases(table: RouteTable) -> None:
        """``from-to-www-redirect``: serve the other name so the filter can redirect it."""
        for name, routes in list(table.exact_hosts.items()):
            wanted = any(
                route.policy.traffic is not None and route.policy.traffic.from_to_www
                for route in routes.routes()
            )
            if not wanted:
                continue
            alias = name[4:] if name.startswith("www.") else "www." + name
            table.exact_hosts.setdefault(alias, routes)

    @staticmethod
    def _regex_hosts(table: RouteTable, problems: list[Problem]) -> None:
        for name, routes in list(table.host_routes()):
            if any(uses_regex(route) for route in routes.routes()):
                _store(table, _key(name), RegexHostRoutes(routes, problems))


def _key(name: str) -> str:
    """The host of a ``host_routes()`` name (``*`` is the host-less entry)."""
    return "" if name == "*" else name


def _slot(table: RouteTable, host: str) -> tuple[str, HostRoutes | None]:
    if not host:
        return host, table.any_host
    if host.startswith("*."):
        return host, table.wildcard_hosts.get(host[2:])
    return host, table.exact_hosts.get(host)


def _store(table: RouteTable, host: str, routes: HostRoutes) -> None:
    if not host:
        table.any_host = routes
    elif host.startswith("*."):
        table.wildcard_hosts[host[2:]] = routes
    else:
        table.exact_hosts[host] = routes

"""The proxy server: listeners, shared state and the per-request dispatch.

Every client connection shares one :class:`ProxyServer`: the route table holder, the
round-robin state, the upstream pools and the timers. The route table is read once per request,
so publishing a new table never disturbs requests or connections already in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass, field

from pyingress.policy.filters import FilterChain, FilterChains
from pyingress.proxy import errors
from pyingress.proxy.asgi import ASGIApp, AsgiExchange
from pyingress.proxy.balancer import RoundRobin
from pyingress.proxy.client import ClientConnection
from pyingress.proxy.exchange import Exchange, ProxyExchange, RequestHead, StaticExchange
from pyingress.proxy.filtered import FilteredExchange
from pyingress.proxy.metrics import ProxyMetrics
from pyingress.proxy.upstream import UpstreamPool
from pyingress.routing.policy import DEFAULT_POLICY
from pyingress.routing.table import Route, RouteTable, TableHolder
from pyingress.tls.trust import TrustedProxies
from pyingress.traffic import filters as _traffic_filters  # noqa: F401 - registers them
from pyingress.traffic.runtime import TrafficRuntime


@dataclass(frozen=True)
class ProxyConfig:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    """Longest idle gap between two reads from the upstream (also closes idle WebSockets)."""
    send_timeout: float = 60.0
    """Longest time a peer may refuse to take bytes the proxy has for it."""
    keepalive_timeout: float = 75.0
    """Idle client connections are closed after this long."""
    max_header_bytes: int = 32768
    """Request line plus headers larger than this are answered with 431."""
    upstream_pool_size: int = 320
    """Idle keep-alive connections kept per endpoint."""
    upstream_keepalive_timeout: float = 60.0
    """Idle upstream connections are closed after this long."""
    server_header: bytes = b"pyingress"
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    """Peers whose ``X-Forwarded-For``/``-Proto`` and ``CF-Connecting-IP`` are believed."""


class ProxyServer:
    """Serves the routes of ``holder.table`` on one or more listeners."""

    def __init__(
        self,
        holder: TableHolder,
        config: ProxyConfig = ProxyConfig(),
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.holder = holder
        self.config = config
        self.metrics = metrics
        self.ident = b"server: " + config.server_header + b"\r\n"
        self.balancer = RoundRobin()
        self.connections: set[ClientConnection] = set()
        self.mounts: list[tuple[str, ASGIApp]] = []
        self.chains = FilterChains()
        self._chains_table: RouteTable | None = None
        self._route_chains: dict[int, tuple[Route, FilterChain]] = {}
        self.traffic = TrafficRuntime(self.balancer)
        self.closing = False
        self.on_close: list[Callable[[], object]] = []
        """Called when the server stops accepting: closes listeners :meth:`listen` did not
        make (the ssl-passthrough one)."""
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: UpstreamPool | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            config = self.config
            self._pool = UpstreamPool(
                self.loop, config.upstream_pool_size, config.upstream_keepalive_timeout
            )
        return self._pool

    async def listen(
        self,
        host: str,
        port: int,
        ssl: ssl_module.SSLContext | None = None,
        scheme: str = "http",
        reuse_port: bool = False,
    ) -> asyncio.Server:
        """Accept connections on ``host:port``; ``scheme`` is what ``X-Forwarded-Proto`` says.

        ``reuse_port`` lets several worker processes share the port (``SO_REUSEPORT``).
        """
        loop = self.loop
        scheme_bytes = scheme.encode()
        server = await loop.create_server(
            lambda: ClientConnection(self, scheme_bytes),
            host,
            port,
            ssl=ssl,
            backlog=4096,
            reuse_port=reuse_port or None,
        )
        self._servers.append(server)
        if self._ticker is None:
            self._tick()
        return server

    def mount(self, path_prefix: str, app: ASGIApp) -> None:
        """Send requests whose path starts with ``path_prefix`` (any host) to ``app``."""
        self.mounts.append((path_prefix, app))

    def dispatch(self, conn: ClientConnection, request: RequestHead) -> Exchange:
        """Choose who answers ``request``: a mounted app, an upstream or an error page."""
        path = request.path
        for prefix, app in self.mounts:
            if path.startswith(prefix):
                return AsgiExchange(conn, request, app)
        table = self.holder.table
        route = table.match(request.host, path)
        if route is None:
            return StaticExchange(conn, request, 404, errors.NOT_FOUND)
        if route.policy is not DEFAULT_POLICY:
            entry = self._route_chains.get(id(route)) if table is self._chains_table else None
            if entry is not None and entry[0] is route:
                chain = entry[1]
            else:
                chain = self._chain(table, route)
            if chain.filters:
                return FilteredExchange(conn, request, route, chain)
        if not route.backend.endpoints:
            reason = route.backend.unavailable or errors.NO_ENDPOINTS
            return StaticExchange(conn, request, 503, reason, route)
        return ProxyExchange(conn, request, route)

    def _chain(self, table: RouteTable, route: Route) -> FilterChain:
        """The route's filter chain, looked up once per route and table.

        ``chain_for`` hashes the whole policy (every annotation's parsed value); doing that per
        request was a visible cost of routes with policies.
        """
        if table is not self._chains_table:
            self._chains_table = table
            self._route_chains = {}
        entry = self._route_chains.get(id(route))
        if entry is None or entry[0] is not route:
            entry = (route, self.chains.chain_for(route.policy, route.ingress))
            self._route_chains[id(route)] = entry
        return entry[1]

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self._drained is not None and not self.connections:
            self._drained.set()

    def _tick(self) -> None:
        """Enforce timeouts: one timer for the whole server instead of one per request."""
        now = self.loop.time()
        for conn in list(self.connections):
            conn.tick(now)
        if self._pool is not None:
            self._pool.expire(now)
        config = self.config
        shortest = min(
            config.read_timeout,
            config.send_timeout,
            config.keepalive_timeout,
            config.upstream_keepalive_timeout,
        )
        interval = max(0.02, min(1.0, shortest / 5))
        self._ticker = self.loop.call_later(interval, self._tick)

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` s), close the rest."""
        self.closing = True
        for server in self._servers:
            server.close()
        for stop in self.on_close:
            stop()
        for conn in list(self.connections):
            if conn.is_idle():
                conn.close()
        if self.connections:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        for conn in list(self.connections):
            conn.closing = True
            conn.transport.abort()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._pool is not None:
            self._pool.close()
        self._servers.clear()

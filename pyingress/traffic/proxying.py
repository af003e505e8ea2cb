"""The data plane's calls into the traffic policy, kept here so the proxy edits stay small.

:class:`~pyingress.proxy.exchange.ProxyExchange` calls :func:`begin` instead of its plain
round-robin when a route's traffic policy needs more (not
:attr:`~pyingress.traffic.policy.TrafficPolicy.plain_upstream`, or a request body to count),
:func:`retry_elsewhere` when a connection to an
endpoint fails (every route: nginx's ``proxy_next_upstream error timeout`` default), and the
other helpers only when :func:`begin` left a :class:`TrafficState` on the exchange.
"""

from __future__ import annotations

import ssl
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyingress.routing.table import Endpoint
from pyingress.traffic.policy import DEFAULT_UPSTREAM, TrafficPolicy
from pyingress.traffic.upstream import BodyLimit, Choice, RequestFacts, may_retry

if TYPE_CHECKING:
    from pyingress.proxy.exchange import ProxyExchange
    from pyingress.proxy.server import ProxyConfig

BODY_TOO_LARGE = "the request body is larger than this route accepts"


@dataclass(slots=True)
class TrafficState:
    """Per-request traffic bookkeeping, on ``exchange.traffic``."""

    policy: TrafficPolicy
    choice: Choice | None = None
    tried: set[Endpoint] = field(default_factory=set)
    body: BodyLimit | None = None
    sent_at: float = 0.0


def facts(exchange: ProxyExchange) -> RequestFacts:
    request = exchange.request
    return RequestFacts(
        header=request.header,
        client=(request.client or exchange.conn.peer_ip).decode("latin-1"),
        host=request.host,
        path=request.path,
        target=request.target.decode("latin-1"),
        scheme=(request.proto or exchange.conn.scheme).decode("latin-1"),
    )


def begin(exchange: ProxyExchange, policy: TrafficPolicy) -> Endpoint | None:
    """Check the body size and choose the endpoint; None when the exchange was answered."""
    state = exchange.traffic = TrafficState(policy)
    limit = policy.upstream.body_size
    if limit and exchange.request.has_body:
        declared = _content_length(exchange)
        if declared is not None and declared > limit:
            exchange.request.keep_alive = False
            exchange.respond_error(413, BODY_TOO_LARGE)
            return None
        state.body = BodyLimit(limit)
    server = exchange.conn.server
    chooser = server.traffic.chooser
    upstream = policy.upstream
    if (
        policy.split is None
        and upstream.affinity is None
        and not upstream.hash_by
        and upstream.load_balance != "ewma"
    ):
        # Plain round-robin: what the chooser would do, without its per-request objects.
        backend = exchange.route.backend
        if not backend.endpoints:
            exchange.respond_error(503, backend.unavailable or "no ready endpoint")
            return None
        return chooser.fallback.pick(backend)
    choice = chooser.choose(exchange.route, facts(exchange))
    if choice is None:
        exchange.respond_error(503, exchange.route.backend.unavailable or "no ready endpoint")
        return None
    state.choice = choice
    state.tried.add(choice.endpoint)
    state.sent_at = exchange.conn.loop.time()
    return choice.endpoint


def _content_length(exchange: ProxyExchange) -> int | None:
    value = exchange.request.header(b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def body_allowed(exchange: ProxyExchange, size: int) -> bool:
    """Count request-body bytes; past the limit answer 413 and close (False)."""
    state = exchange.traffic
    if state is None or state.body is None or state.body.feed(size):
        return True
    exchange.request.keep_alive = False
    exchange.respond_error(413, BODY_TOO_LARGE)
    return False


def connect_options(
    exchange: ProxyExchange, config: ProxyConfig
) -> tuple[float, ssl.SSLContext | None, str | None]:
    """The connect timeout, TLS context and server name for ``create_connection``."""
    state = exchange.traffic
    if state is None:
        return config.connect_timeout, None, None
    upstream = state.policy.upstream
    timeout = upstream.connect_timeout or config.connect_timeout
    if upstream.ssl is None:
        return timeout, None, None
    runtime = exchange.conn.server.traffic
    name = runtime.server_hostname(upstream.ssl, exchange.request.host) or ""
    return timeout, runtime.ssl_context(upstream.ssl), name


def pool_key(exchange: ProxyExchange, endpoint: Endpoint) -> Hashable:
    """What idle upstream connections for this attempt are filed under.

    A TLS connection opened for one ``proxy-ssl-*`` policy (context and server name) must
    never serve another, nor a plain-HTTP route to the same endpoint.
    """
    state = exchange.traffic
    if state is None or state.policy.upstream.ssl is None:
        return endpoint
    _, tls, server_name = connect_options(exchange, exchange.conn.server.config)
    return (endpoint, tls, server_name)


def timeouts(exchange: ProxyExchange, config: ProxyConfig) -> tuple[float, float]:
    """``(send, read)`` idle timeouts for this exchange."""
    state = exchange.traffic
    if state is None:
        return config.send_timeout, config.read_timeout
    upstream = state.policy.upstream
    return (
        upstream.send_timeout or config.send_timeout,
        upstream.read_timeout or config.read_timeout,
    )


def response_headers(exchange: ProxyExchange, headers: list[tuple[bytes, bytes]]) -> None:
    """A new sticky-session cookie, and the latency sample for EWMA."""
    state = exchange.traffic
    if state is None or state.choice is None:
        return
    choice = state.choice
    if choice.set_cookie is not None:
        headers.append((b"Set-Cookie", choice.set_cookie))
    if choice.ewma:
        exchange.conn.server.traffic.chooser.finished(
            choice, exchange.conn.loop.time() - state.sent_at
        )
        choice.ewma = False


def retry_elsewhere(exchange: ProxyExchange) -> bool:
    """After a failed connect, send the request to another endpoint if the policy allows."""
    from pyingress.proxy.exchange import upstream_request_head

    route = exchange.route
    state = exchange.traffic
    if state is None:
        state = exchange.traffic = TrafficState(route.policy.traffic or TrafficPolicy())
    upstream = state.policy.upstream if route.policy.traffic else DEFAULT_UPSTREAM
    if exchange.endpoint is not None:
        state.tried.add(exchange.endpoint)
    method = exchange.request.method.decode("latin-1")
    if not may_retry(upstream, len(state.tried), sent_anything=False, method=method):
        return False
    server = exchange.conn.server
    choice = server.traffic.chooser.choose(route, facts(exchange), frozenset(state.tried))
    if choice is None:
        return False
    state.choice = choice
    state.tried.add(choice.endpoint)
    exchange.endpoint = choice.endpoint
    exchange.upstream_head = upstream_request_head(exchange.request, exchange.conn, choice.endpoint)
    pooled = server.pool.acquire(pool_key(exchange, choice.endpoint))
    if pooled is None:
        exchange.connect()
    else:
        exchange.attach(pooled)
    return True

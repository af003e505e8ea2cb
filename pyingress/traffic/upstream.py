"""The upstream side of a traffic policy, as small objects the data plane calls.

- :class:`UpstreamChooser` picks the backend (main or canary) and the endpoint: sticky cookie,
  consistent hash, peak-EWMA or round-robin, skipping endpoints a retry already tried.
- :class:`BodyLimit` enforces ``proxy-body-size`` up front (Content-Length) and while a chunked
  body streams.
- :func:`may_retry` says whether a failed attempt may go to another endpoint.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import formatdate
from typing import Protocol
from urllib.parse import parse_qsl

from pyingress.routing.table import Backend, Endpoint, Route
from pyingress.traffic.balance import ConsistentHash, PeakEwma, StickyIndex, endpoint_key
from pyingress.traffic.canary import HeaderLookup, cookie_value, wants_canary
from pyingress.traffic.policy import AffinityPolicy, TrafficPolicy, UpstreamPolicy

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class Picker(Protocol):
    """The proxy's default balancer (round-robin)."""

    def pick(self, backend: Backend) -> Endpoint: ...


@dataclass(slots=True)
class RequestFacts:
    """What endpoint choice may depend on; built by the proxy only for routes with a policy."""

    header: HeaderLookup
    """Looks up a request header by lower-case name."""
    client: str
    host: str
    path: str
    target: str
    scheme: str = "http"


@dataclass(slots=True)
class Choice:
    backend: Backend
    endpoint: Endpoint
    set_cookie: bytes | None = None
    """A ``Set-Cookie`` value to add to the response (a new sticky session)."""
    ewma: bool = False
    """Report the attempt to :meth:`UpstreamChooser.finished` (EWMA bookkeeping)."""


class UpstreamChooser:
    """One per proxy: the state (EWMA samples, hash rings) outlives route-table swaps."""

    def __init__(self, fallback: Picker, rng: Callable[[], float] = random.random) -> None:
        self.fallback = fallback
        self.rng = rng
        self.ewma = PeakEwma()
        self.hashing = ConsistentHash()
        self.sticky = StickyIndex()
        self._cookies: dict[tuple[AffinityPolicy, str, bool], bytes] = {}

    def choose(
        self, route: Route, facts: RequestFacts, tried: frozenset[Endpoint] = frozenset()
    ) -> Choice | None:
        """The backend and endpoint for this attempt, or None when nothing is left (503)."""
        traffic = route.policy.traffic or TrafficPolicy()
        backend = route.backend
        split = traffic.split
        if (
            split is not None
            and split.backend.endpoints
            and wants_canary(split.rule, facts.header, self.rng)
        ):
            backend = split.backend
        endpoints = backend.endpoints
        if tried:
            endpoints = tuple(endpoint for endpoint in endpoints if endpoint not in tried)
        if not endpoints:
            return None
        upstream = traffic.upstream
        affinity = upstream.affinity
        if affinity is not None:
            return self._sticky(route, backend, endpoints, affinity, facts, upstream)
        return self._balanced(backend, endpoints, upstream, facts)

    def finished(self, choice: Choice, seconds: float) -> None:
        if choice.ewma:
            self.ewma.finished(choice.endpoint, seconds)

    def _balanced(
        self,
        backend: Backend,
        endpoints: tuple[Endpoint, ...],
        upstream: UpstreamPolicy,
        facts: RequestFacts,
    ) -> Choice:
        if upstream.hash_by:
            key = hash_key(upstream.hash_by, facts)
            return Choice(backend, self.hashing.pick(endpoints, key))
        if upstream.load_balance == "ewma":
            endpoint = self.ewma.pick(endpoints)
            self.ewma.started(endpoint)
            return Choice(backend, endpoint, ewma=True)
        if endpoints is backend.endpoints:
            return Choice(backend, self.fallback.pick(backend))
        return Choice(backend, self.fallback.pick(Backend(backend.service, endpoints)))

    def _sticky(
        self,
        route: Route,
        backend: Backend,
        endpoints: tuple[Endpoint, ...],
        affinity: AffinityPolicy,
        facts: RequestFacts,
        upstream: UpstreamPolicy,
    ) -> Choice:
        value = cookie_value(facts.header(b"cookie"), affinity.cookie_name)
        if value is not None:
            endpoint = self.sticky.find(endpoints, value)
            if endpoint is not None:
                return Choice(backend, endpoint)
        choice = self._balanced(backend, endpoints, replace(upstream, affinity=None), facts)
        key = endpoint_key(choice.endpoint)
        attributes = self._attributes(affinity, route, facts.scheme == "https")
        choice.set_cookie = f"{affinity.cookie_name}={key}; ".encode() + attributes
        return choice

    def _attributes(self, affinity: AffinityPolicy, route: Route, secure: bool) -> bytes:
        """Cookie attributes, built once per policy, path and scheme (unless they expire)."""
        if affinity.expires is not None:
            return cookie_attributes(affinity, route, secure)
        cache_key = (affinity, route.path, secure)
        cached = self._cookies.get(cache_key)
        if cached is None:
            if len(self._cookies) > 1024:
                self._cookies.clear()
            cached = self._cookies[cache_key] = cookie_attributes(affinity, route, secure)
        return cached


def _cookie_path(route: Route) -> str:
    path = route.path
    traffic = route.policy.traffic
    if not path or (traffic is not None and traffic.use_regex):
        return "/"
    return path


def cookie_attributes(affinity: AffinityPolicy, route: Route, secure_request: bool) -> bytes:
    """The attributes of a sticky-session cookie, as ingress-nginx writes them."""
    parts = [f"Path={affinity.path or _cookie_path(route)}"]
    if affinity.domain:
        parts.append(f"Domain={affinity.domain}")
    if affinity.max_age is not None:
        parts.append(f"Max-Age={affinity.max_age}")
    if affinity.expires is not None:
        parts.append(f"Expires={formatdate(time.time() + affinity.expires, usegmt=True)}")
    parts.append("HttpOnly")
    samesite = affinity.samesite
    if affinity.conditional_samesite_none and samesite == "None" and not secure_request:
        samesite = ""
    if affinity.secure or (samesite == "None" and secure_request):
        parts.append("Secure")
    if samesite:
        parts.append(f"SameSite={samesite}")
    return "; ".join(parts).encode()


def hash_key(parts: tuple[str, ...], facts: RequestFacts) -> bytes:
    """The ``upstream-hash-by`` key of a request: its ``$variables`` filled in."""
    out: list[str] = []
    query = facts.target.partition("?")[2]
    for part in parts:
        if not part.startswith("$"):
            out.append(part)
        elif part in ("$remote_addr", "$binary_remote_addr"):
            out.append(facts.client)
        elif part == "$request_uri":
            out.append(facts.target)
        elif part == "$uri":
            out.append(facts.path)
        elif part == "$host":
            out.append(facts.host)
        elif part == "$args":
            out.append(query)
        elif part.startswith("$http_"):
            value = facts.header(part[6:].replace("_", "-").encode())
            out.append(value.decode("latin-1") if value else "")
        elif part.startswith("$cookie_"):
            out.append(cookie_value(facts.header(b"cookie"), part[8:]) or "")
        elif part.startswith("$arg_"):
            out.append(next((v for k, v in parse_qsl(query) if k == part[5:]), ""))
    return "\x00".join(out).encode("utf-8", "surrogateescape")


class BodyLimit:
    """``proxy-body-size``: 413 before forwarding when Content-Length says too much, and
    mid-stream when a chunked body grows past the limit."""

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def declared_ok(self, content_length: int | None) -> bool:
        return content_length is None or content_length <= self.limit

    def feed(self, size: int) -> bool:
        """Count ``size`` more body bytes; False once the body is over the limit."""
        self.seen += size
        return self.seen <= self.limit


def body_limit(traffic: TrafficPolicy | None) -> BodyLimit | None:
    if traffic is None or not traffic.upstream.body_size:
        return None
    return BodyLimit(traffic.upstream.body_size)


def may_retry(upstream: UpstreamPolicy, attempts: int, sent_anything: bool, method: str) -> bool:
    """Whether to try another endpoint after attempt number ``attempts`` failed.

    Like nginx's ``proxy_next_upstream error timeout``: only a failure before any byte of the
    request reached the backend is retried (then even a POST is safe to resend), within
    ``proxy-next-upstream-tries`` attempts (0: no limit other than the endpoints).
    """
    del method
    if sent_anything:
        return False
    tries = upstream.next_upstream_tries
    return tries == 0 or attempts < tries

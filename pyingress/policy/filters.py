"""The filter protocol, the chain that runs filters in order, and the factory registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyingress.model import ObjectRef
from pyingress.routing.policy import DEFAULT_POLICY, RoutePolicy
from pyingress.routing.table import Route

Headers = list[tuple[bytes, bytes]]
Field = tuple[bytes, bytes, bytes]
"""A header as ``(lower-case name, name, value)``: the name is lowered once, where it is made."""

NO_NAMES: frozenset[bytes] = frozenset()


def fields_of(headers: Iterable[tuple[bytes, bytes]]) -> tuple[Field, ...]:
    """``(name, value)`` pairs as fields; filters call this once, when they are built."""
    return tuple((name.lower(), name, value) for name, value in headers)


class HeaderBlock:
    """Response headers a filter adds, made once: the fields and their bytes on the wire."""

    __slots__ = ("appendable", "data", "fields", "names")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.fields = fields_of(headers)
        self.names = frozenset(lname for lname, _, _ in self.fields)
        self.data = b"".join(b"%s: %s\r\n" % (name, value) for _, name, value in self.fields)
        # Imported here: the proxy package imports this module.
        from pyingress.proxy.headers import RESPONSE_DROPPED

        self.appendable = self.names.isdisjoint(RESPONSE_DROPPED) and (
            b"content-length" not in self.names
        )
        """False when a header needs the proxy's handling (framing, hop-by-hop), not just
        appending after the upstream's."""

    def without(self, names: frozenset[bytes] | set[bytes], prefix: bytes = b"") -> HeaderBlock:
        """This block less the headers called ``names`` or starting with ``prefix``."""
        return HeaderBlock(
            (name, value)
            for lname, name, value in self.fields
            if lname not in names and not (prefix and lname.startswith(prefix))
        )


class RequestView:
    """What filters see of a request, and what they change before it is forwarded.

    The request headers are the proxy's parsed fields, shared and never modified here: edits
    are recorded (names removed, fields added) and applied in one pass when the upstream
    request is built, so an edit costs no copy of the header list. Response edits work the
    same way: filters add fields and name the headers to drop, and the proxy applies both
    while it writes the response head. ``target`` is the request target sent upstream; a
    rewrite changes it.
    """

    __slots__ = (
        "_added",
        "_drop_names",
        "_drop_prefixes",
        "_extra",
        "_fields",
        "_removed",
        "client",
        "host",
        "method",
        "path",
        "query",
        "route",
        "scheme",
        "state",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        query: str,
        host: str,
        scheme: str,
        client: str,
        headers: Iterable[tuple[bytes, bytes]],
        route: Route,
        fields: list[Field] | None = None,
    ) -> None:
        """``headers`` as ``(name, value)`` pairs, or (the proxy) ``fields`` as parsed."""
        self.method = method
        self.target = target
        self.path = path
        """The normalised path the route was matched with (no query)."""
        self.query = query
        self.host = host
        """Normalised host (lower case, no port)."""
        self.scheme = scheme
        self.client = client
        """The client address, as trusted-proxy settings define it."""
        self.route = route
        self.state: dict[str, Any] = {}
        self._fields = fields if fields is not None else list(fields_of(headers))
        self._removed: frozenset[bytes] | set[bytes] = NO_NAMES
        self._added: list[Field] | None = None
        self._extra: list[HeaderBlock] | None = None
        self._drop_names: frozenset[bytes] | set[bytes] = NO_NAMES
        self._drop_prefixes: tuple[bytes, ...] = ()

    # -- request headers ----------------------------------------------------------------------

    def header(self, name: bytes) -> bytes | None:
        """The first value of a request header as it will be forwarded (``name`` lower-case)."""
        if name not in self._removed:
            for lname, _, value in self._fields:
                if lname == name:
                    return value
        if self._added:
            for lname, _, value in self._added:
                if lname == name:
                    return value
        return None

    def remove_header(self, name: bytes) -> None:
        """Forward no request header called ``name`` (lower-case)."""
        removed = self._removed
        if not isinstance(removed, set):
            removed = self._removed = set(removed)
        removed.add(name)
        if self._added:
            self._added = [item for item in self._added if item[0] != name]

    def set_header(self, name: bytes, value: bytes) -> None:
        """Replace every request header called ``name`` (any case) by one with ``value``."""
        lname = name.lower()
        self.remove_header(lname)
        self.add_field((lname, name, value))

    def set_fields(self, items: tuple[Field, ...], names: frozenset[bytes]) -> None:
        """:meth:`set_header` for several fields built once by a filter (``names``: theirs)."""
        if not self._removed:
            self._removed = names
        else:
            self._removed = {*self._removed, *names}
        added = self._added
        if added:
            self._added = [item for item in added if item[0] not in names]
            self._added.extend(items)
        else:
            self._added = list(items)

    def add_header(self, name: bytes, value: bytes) -> None:
        """Forward one more request header, keeping any others of that name."""
        self.add_field((name.lower(), name, value))

    def add_field(self, item: Field) -> None:
        """:meth:`add_header` with the name already lowered (built once by the filter)."""
        if self._added is None:
            self._added = [item]
        else:
            self._added.append(item)

    def edited_fields(self) -> list[Field] | None:
        """The request headers to forward if a filter changed them (else None): the client's
        less the removed names, plus the added fields."""
        removed, added = self._removed, self._added
        if not removed:
            return self._fields + added if added else None
        kept = [item for item in self._fields if item[0] not in removed]
        return kept + added if added else kept

    @property
    def headers(self) -> Headers:
        """The request headers to forward, as ``(name, value)`` pairs (a copy: edit with the
        methods above)."""
        fields = self.edited_fields()
        return [(name, value) for _, name, value in (self._fields if fields is None else fields)]

    # -- response headers ---------------------------------------------------------------------

    def add_response_header(self, name: bytes, value: bytes) -> None:
        """Put a header on the response (whoever answers: the upstream or a :class:`Reply`)."""
        self.add_response_block(HeaderBlock(((name, value),)))

    def add_response_block(self, block: HeaderBlock) -> None:
        """Put a filter's prepared headers on the response."""
        if self._extra is None:
            self._extra = [block]
        else:
            self._extra.append(block)

    def drop_response_headers(self, names: frozenset[bytes]) -> None:
        """Remove the response headers called any of ``names`` (lower-case) that the response
        has so far: the upstream's (or the Reply's) and those filters added before."""
        extra = self._extra
        if extra:
            for index, block in enumerate(extra):
                if not block.names.isdisjoint(names):
                    extra[index] = block.without(names)
        drop = self._drop_names
        if not drop:
            self._drop_names = names
        elif isinstance(drop, set):
            drop.update(names)
        else:
            self._drop_names = set(drop) | names

    def drop_response_prefix(self, prefix: bytes) -> None:
        """:meth:`drop_response_headers` for every name starting with ``prefix`` (lower-case)."""
        extra = self._extra
        if extra:
            for index, block in enumerate(extra):
                if any(name.startswith(prefix) for name in block.names):
                    extra[index] = block.without(NO_NAMES, prefix)
        self._drop_prefixes = (*self._drop_prefixes, prefix)

    def response_edits(
        self,
    ) -> tuple[frozenset[bytes] | set[bytes], tuple[bytes, ...], list[HeaderBlock] | None]:
        """``(names, prefixes, blocks)``: what to drop from the response and what to add; the
        edits are handed over once (a second call returns none)."""
        edits = (self._drop_names, self._drop_prefixes, self._extra)
        self._drop_names, self._drop_prefixes, self._extra = NO_NAMES, (), None
        return edits

    def apply_response_edits(self, headers: Headers) -> None:
        """Apply :meth:`response_edits` to ``headers`` in place (replies, tests)."""
        names, prefixes, extra = self.response_edits()
        if names or prefixes:
            headers[:] = [
                (name, value)
                for name, value in headers
                if not dropped(name.lower(), names, prefixes)
            ]
        for block in extra or ():
            headers.extend((name, value) for _, name, value in block.fields)


def dropped(
    lname: bytes, names: frozenset[bytes] | set[bytes], prefixes: tuple[bytes, ...]
) -> bool:
    return lname in names or (bool(prefixes) and lname.startswith(prefixes))


@dataclass(slots=True)
class Reply:
    """A response made by the proxy itself (redirect, 401, 403, 429/503, preflight)."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class Filter(Protocol):
    """One concern's behaviour for one route policy.

    ``on_request`` runs before the request is forwarded: return a :class:`Reply` to answer at
    the proxy, or None to continue, after editing the request through the :class:`RequestView`
    (``set_header``, ``remove_header``, ``add_header``, ``target``). ``on_response`` runs when
    the response head is known (the upstream's, or a Reply's): ``headers`` are what the
    response has so far, to read only; a filter changes the response through the view
    (``add_response_block``, ``drop_response_headers``, ``drop_response_prefix``), and the
    proxy applies every edit in one pass while it writes the head.

    Both run once per request, so a filter builds everything static (header fields with
    their names lowered, whole replies) when it is made, not per request. A filter whose
    ``on_request`` or ``on_response`` never does anything may say so with a false
    ``handles_request`` or ``handles_response`` attribute: the chain then skips the call.
    A filter whose request part never waits may also define ``check(request)``: the same as
    ``on_request`` as a plain function; a chain whose filters all have it runs without any
    coroutine.
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

    __slots__ = ("_checks", "filters", "requesting", "responders", "responding", "synchronous")

    def __init__(self, filters: tuple[Filter, ...]) -> None:
        self.filters = filters
        self.requesting = tuple(f for f in filters if getattr(f, "handles_request", True))
        self.responding = tuple(f for f in filters if getattr(f, "handles_response", True))
        self._checks = _checks_of(self.requesting)
        self.synchronous = self._checks is not None
        """True when every filter has a ``check``: :meth:`check` may replace :meth:`on_request`."""
        self.responders = tuple(f.on_response for f in self.responding)
        """The ``on_response`` of each filter that has one, in order."""

    def check(self, request: RequestView) -> Reply | None:
        """:meth:`on_request` as a plain call (only when :attr:`synchronous`)."""
        assert self._checks is not None
        for check in self._checks:
            reply = check(request)
            if reply is not None:
                self.on_response(request, reply.status, reply.headers)
                return reply
        return None

    async def on_request(self, request: RequestView) -> Reply | None:
        """Run each filter's ``on_request``; a Reply ends the chain, and gets every filter's
        response edits applied to its headers."""
        for item in self.requesting:
            reply = await item.on_request(request)
            if reply is not None:
                self.on_response(request, reply.status, reply.headers)
                return reply
        return None

    def run_response(self, request: RequestView, status: int, headers: Headers) -> None:
        """Run each filter's ``on_response``; the edits stay on ``request`` for the proxy."""
        for on_response in self.responders:
            on_response(request, status, headers)

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        """Run each filter's ``on_response`` and apply the edits to ``headers`` in place."""
        self.run_response(request, status, headers)
        request.apply_response_edits(headers)


def _checks_of(
    filters: tuple[Filter, ...],
) -> tuple[Callable[[RequestView], Reply | None], ...] | None:
    """Each filter's ``check``, or None when one of them has none."""
    checks = []
    for item in filters:
        check = getattr(item, "check", None)
        if check is None:
            return None
        checks.append(check)
    return tuple(checks)


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

"""The filter protocol, the chain that runs filters in order, and the factory registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyingress.model import ObjectRef
from pyingress.routing.paths import normalize_host
from pyingress.routing.policy import DEFAULT_POLICY, RoutePolicy
from pyingress.routing.table import Route

Headers = list[tuple[bytes, bytes]]
Field = tuple[bytes, bytes, bytes]
"""A header as ``(lower-case name, name, value)``: the name is lowered once, where it is made."""

NO_NAMES: frozenset[bytes] = frozenset()


def fields_of(headers: Iterable[tuple[bytes, bytes]]) -> tuple[Field, ...]:
    """``(name, value)`` pairs as fields; filters call this once, when they are built."""
    return tuple((name.lower(), name, value) for name, value in headers)


class RequestEdit:
    """Request headers a filter sets, made once when the filter is built: the client's headers
    of these names are replaced. ``lines`` are the fields as written upstream, or None when
    one of them needs the proxy's handling (hop-by-hop, framing, forwarding headers)."""

    __slots__ = ("fields", "lines", "names")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        # Imported here: the proxy package imports this module.
        from pyingress.proxy.headers import REQUEST_DROPPED

        self.fields = fields_of(headers)
        self.names = frozenset(lname for lname, _, _ in self.fields)
        special = REQUEST_DROPPED | {b"content-length", b"cf-connecting-ip"}
        self.lines = (
            b"".join(b"%s: %s\r\n" % (name, value) for _, name, value in self.fields)
            if self.names.isdisjoint(special)
            else None
        )


class ResponseEdit:
    """A change to a response head: drop the headers called one of ``drop`` (the upstream's,
    and those earlier edits added), then add ``add``.

    A filter makes its edits once (when it is built, or once per ``Origin``) and returns the
    same object for every response; edits are compared by identity, so the combination of the
    edits a response gets is worked out once per distinct sequence, not per request. An edit
    made for one response only (a session cookie) says ``once`` and is never cached.
    """

    __slots__ = ("fields", "names", "once", "plan")

    def __init__(
        self,
        add: Iterable[tuple[bytes, bytes]] = (),
        drop: Iterable[bytes] = (),
        once: bool = False,
    ) -> None:
        self.fields = fields_of(add)
        self.names = frozenset(name.lower() for name in drop)
        self.once = once
        self.plan = ResponsePlan((self,))
        """This edit alone, as the proxy applies it."""

    @classmethod
    def setting(cls, headers: Iterable[tuple[bytes, bytes]]) -> ResponseEdit:
        """Set ``headers``, replacing any value the response already has for their names."""
        fields = fields_of(headers)
        return cls(((name, value) for _, name, value in fields), (lname for lname, _, _ in fields))


class ResponsePlan:
    """The edits of one response combined in order: what the proxy applies in its one pass
    over the upstream's headers (leave out the names in ``skip``, then append ``data``)."""

    __slots__ = ("appendable", "data", "fields", "names", "skip")

    def __init__(self, edits: Iterable[ResponseEdit]) -> None:
        # Imported here: the proxy package imports this module.
        from pyingress.proxy.headers import RESPONSE_DROPPED

        names: frozenset[bytes] = NO_NAMES
        fields: list[Field] = []
        for edit in edits:
            if edit.names:
                fields = [item for item in fields if item[0] not in edit.names]
                names |= edit.names
            fields.extend(edit.fields)
        self.names = names
        self.skip = RESPONSE_DROPPED | names
        """The dropped names and those the proxy never forwards (hop-by-hop, framing)."""
        self.fields = tuple(fields)
        self.data = b"".join(b"%s: %s\r\n" % (name, value) for _, name, value in fields)
        added = {lname for lname, _, _ in fields}
        self.appendable = added.isdisjoint(RESPONSE_DROPPED) and b"content-length" not in added
        """False when an added header needs the proxy's handling (framing, hop-by-hop), not
        just appending after the upstream's."""

    def apply(self, headers: Headers) -> Headers:
        """``headers`` less the dropped ones, plus the added fields (a new list)."""
        names = self.names
        kept = [(name, value) for name, value in headers if name.lower() not in names]
        kept.extend((name, value) for _, name, value in self.fields)
        return kept


MAX_PLANS = 4096
"""Combined plans kept; past that (edits of replaced tables) the cache starts over."""
_PLANS: dict[tuple[ResponseEdit, ...], ResponsePlan] = {}


def combined(edits: list[ResponseEdit]) -> ResponsePlan:
    """The plan of several edits, made once per distinct sequence of shared edits."""
    key = tuple(edits)
    plan = _PLANS.get(key)
    if plan is None:
        plan = ResponsePlan(key)
        for edit in key:
            if edit.once:
                return plan
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


class ParsedHead(Protocol):
    """What the proxy parsed of a request (:class:`pyingress.proxy.exchange.RequestHead`)."""

    method: bytes
    target: bytes
    path: str
    """Normalised (decoded, dot segments resolved): what routes are matched with."""
    host: str
    """The ``Host`` header as sent."""
    proto: bytes
    client: bytes
    headers: list[Field]
    """The client's header fields, as parsed; never modified."""
    removed: frozenset[bytes] | set[bytes]
    """Names of the client's headers not to forward (the filters' edits)."""
    added: tuple[Field, ...] | list[Field]
    """Fields to forward after the client's (the filters' edits)."""
    added_lines: bytes | None
    """``added`` as written upstream, when they are one :class:`RequestEdit`'s."""

    def header(self, name: bytes) -> bytes | None:
        """The first value of a request header as it will be forwarded (``name`` lower-case)."""


class RequestView:
    """What filters see of a request, and what they change before it is forwarded.

    The text fields are decoded from the parsed request when a filter first reads them: most
    filters read one or two. Header edits are recorded on the parsed request (names removed,
    fields added) and applied while the upstream request is written, so an edit costs no copy
    of the header list.
    """

    __slots__ = ("_head", "new_target", "route", "state")

    def __init__(self, head: ParsedHead, route: Route) -> None:
        self._head = head
        self.route = route
        self.state: dict[str, Any] = {}
        self.new_target: str | None = None
        """The request target a filter set (a rewrite), if any."""

    @property
    def method(self) -> str:
        return self._head.method.decode("latin-1")

    @property
    def target(self) -> str:
        """The request target sent upstream: the client's, unless a filter set another."""
        new = self.new_target
        return self._head.target.decode("latin-1") if new is None else new

    @target.setter
    def target(self, value: str) -> None:
        self.new_target = value

    @property
    def path(self) -> str:
        """The normalised path the route was matched with (no query)."""
        return self._head.path

    @property
    def query(self) -> str:
        """The client's query string (without ``?``)."""
        return self._head.target.partition(b"?")[2].decode("latin-1")

    @property
    def host(self) -> str:
        """Normalised host (lower case, no port)."""
        host = self._head.host
        return host if host == self.route.host else normalize_host(host)

    @property
    def scheme(self) -> str:
        return self._head.proto.decode()

    @property
    def client(self) -> str:
        """The client address, as trusted-proxy settings define it."""
        return self._head.client.decode()

    # -- request headers ----------------------------------------------------------------------

    def header(self, name: bytes) -> bytes | None:
        """The first value of a request header as it will be forwarded (``name`` lower-case)."""
        return self._head.header(name)

    def edit_request(self, edit: RequestEdit) -> None:
        """Set the request headers of a filter's prepared edit (replacing the client's)."""
        head = self._head
        if not head.removed and not head.added:
            head.removed, head.added, head.added_lines = edit.names, edit.fields, edit.lines
            return
        head.removed = {*head.removed, *edit.names}
        head.added = [*(item for item in head.added if item[0] not in edit.names), *edit.fields]
        head.added_lines = None

    def remove_header(self, name: bytes) -> None:
        """Forward no request header called ``name`` (lower-case)."""
        head = self._head
        removed = head.removed
        if not isinstance(removed, set):
            removed = head.removed = set(removed)
        removed.add(name)
        if head.added:
            head.added = [item for item in head.added if item[0] != name]
            head.added_lines = None

    def set_header(self, name: bytes, value: bytes) -> None:
        """Replace every request header called ``name`` (any case) by one with ``value``."""
        lname = name.lower()
        self.remove_header(lname)
        self.add_field((lname, name, value))

    def add_header(self, name: bytes, value: bytes) -> None:
        """Forward one more request header, keeping any others of that name."""
        self.add_field((name.lower(), name, value))

    def add_field(self, item: Field) -> None:
        """:meth:`add_header` with the name already lowered (built once by the filter)."""
        head = self._head
        added = head.added
        if isinstance(added, list):
            added.append(item)
        else:  # an edit's shared tuple: never changed in place
            head.added = [*added, item]
        head.added_lines = None

    @property
    def headers(self) -> Headers:
        """The request headers to forward, as ``(name, value)`` pairs (a copy: edit with the
        methods above)."""
        head = self._head
        removed = head.removed
        kept = [(name, value) for lname, name, value in head.headers if lname not in removed]
        kept.extend((name, value) for _, name, value in head.added)
        return kept


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
    (``edit_request`` with a prepared :class:`RequestEdit`, or ``set_header``,
    ``remove_header``, ``add_header``; ``target``). ``on_response`` runs when
    the response head is known (the upstream's, or a Reply's): ``headers`` are what the
    response has so far, to read only; a filter changes the response by returning a
    :class:`ResponseEdit`, and the proxy applies the edits of all filters, combined, in one
    pass while it writes the head.

    Both run once per request, so a filter builds everything static (its response edits,
    header fields with their names lowered, whole replies) when it is made, not per request.
    A filter whose ``on_request`` or ``on_response`` never does anything may say so with a false
    ``handles_request`` or ``handles_response`` attribute: the chain then skips the call.
    A filter whose request part never waits may also define ``check(request)``: the same as
    ``on_request`` as a plain function; a chain whose filters all have it runs without any
    coroutine.
    """

    async def on_request(self, request: RequestView) -> Reply | None: ...

    def on_response(
        self, request: RequestView, status: int, headers: Headers
    ) -> ResponseEdit | None: ...


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

    def response_plan(
        self, request: RequestView, status: int, headers: Headers
    ) -> ResponsePlan | None:
        """Run each filter's ``on_response``; their edits combined, or None for no edit."""
        first: ResponseEdit | None = None
        more: list[ResponseEdit] | None = None
        for on_response in self.responders:
            edit = on_response(request, status, headers)
            if edit is None:
                continue
            if first is None:
                first = edit
            elif more is None:
                more = [first, edit]
            else:
                more.append(edit)
        if more is not None:
            return combined(more)
        return None if first is None else first.plan

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        """Run each filter's ``on_response`` and apply the edits to ``headers`` in place."""
        plan = self.response_plan(request, status, headers)
        if plan is not None:
            headers[:] = plan.apply(headers)


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

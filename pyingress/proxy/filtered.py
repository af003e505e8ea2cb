"""Requests on routes whose policy has filters: run the chain, then proxy or answer.

Only routes with a non-default policy come here, so plain routes pay nothing for the filter
machinery. While the (possibly asynchronous) chain runs, reading from the client is paused and
any body bytes already read are held, exactly as while an upstream connection is being opened.
"""

from __future__ import annotations

import dis
import inspect
import logging
from collections.abc import Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pyingress.policy.filters import (
    FilterChain,
    HeaderBlock,
    Headers,
    Reply,
    RequestView,
    dropped,
)
from pyingress.proxy import errors
from pyingress.proxy.exchange import ProxyExchange, RequestHead
from pyingress.proxy.headers import DATE, RESPONSE_DROPPED
from pyingress.routing.paths import normalize_host
from pyingress.routing.table import Route

if TYPE_CHECKING:
    from pyingress.proxy.client import ClientConnection

logger = logging.getLogger("pyingress.proxy")


class FilteredExchange(ProxyExchange):
    """A :class:`ProxyExchange` that first runs its route's filter chain."""

    __slots__ = ("chain", "original_target", "view")

    def __init__(
        self, conn: ClientConnection, request: RequestHead, route: Route, chain: FilterChain
    ) -> None:
        super().__init__(conn, request, route)
        self.chain = chain
        target = request.target.decode("latin-1")
        host = request.host
        if host != route.host:  # a route's host is normalised already: equal needs no work
            host = normalize_host(host)
        self.original_target = target
        self.view = RequestView(
            request.method.decode("latin-1"),
            target,
            request.path,
            target.partition("?")[2],
            host,
            request.proto.decode(),
            request.client.decode(),
            (),
            route,
            request.headers,
        )

    def start(self) -> None:
        conn, chain = self.conn, self.chain
        if chain.synchronous:
            # No coroutine, no task and no pause: those were the largest cost of policies.
            try:
                reply = chain.check(self.view)
            except Exception:
                self._failed()
                return
            self._proceed(reply)
            return
        if never_waits(chain):
            _run_now(self._run_chain())
            return
        conn.pause(conn.PAUSE_CONNECT)
        conn.loop.create_task(self._run_chain())

    async def _run_chain(self) -> None:
        try:
            reply = await self.chain.on_request(self.view)
        except Exception:
            self._failed()
            return
        self._proceed(reply)

    def _failed(self) -> None:
        logger.exception("request filter failed for %s", self.route.ingress_name)
        if not self.done:
            self.respond_error(500, errors.INTERNAL)

    def _proceed(self, reply: Reply | None) -> None:
        """After the request filters: answer with their reply, or forward the request."""
        if self.done:
            return
        if reply is not None:
            self.reply(reply)
            return
        self._apply_view()
        if not self.route.backend.endpoints:
            self.respond_error(503, self.route.backend.unavailable or errors.NO_ENDPOINTS)
            return
        super().start()

    def _apply_view(self) -> None:
        """Carry the filters' edits (headers, target) into the request sent upstream."""
        request, view = self.request, self.view
        fields = view.edited_fields()
        if fields is not None:
            request.headers = fields
        if view.target is not self.original_target:
            request.target = view.target.encode("latin-1")

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        view = self.view
        for on_response in self.chain.responders:
            on_response(view, status, headers)
        names, prefixes, extra = view.response_edits()
        if extra is not None:
            for block in extra:
                if not block.appendable:
                    headers = merged(headers, extra, names, prefixes)
                    return self.write_head(status, reason, headers)
        if names or prefixes:
            return self.write_head(status, reason, headers, extra, skipped(names), prefixes)
        return self.write_head(status, reason, headers, extra)

    def reply(self, reply: Reply) -> None:
        """Answer at the proxy with a filter's reply; an unread request body is discarded."""
        conn, request = self.conn, self.request
        self.pending = []
        keep_alive = request.keep_alive and not request.upgrade and not conn.server.closing
        conn.transport.write(reply_bytes(reply, conn.server.ident, request.head_only, keep_alive))
        conn.resume(conn.PAUSE_CONNECT)
        self.finish(reply.status, keep_alive, self.route)


_SUSPENDING = frozenset({"GET_AWAITABLE", "GET_ANEXT", "BEFORE_ASYNC_WITH", "YIELD_VALUE"})
_NEVER_WAITS: dict[type, bool] = {}
_CHAINS: dict[int, tuple[FilterChain, bool]] = {}


def never_waits(chain: FilterChain) -> bool:
    """True when no filter of ``chain`` can suspend, so the chain may run inside the callback.

    A filter's ``on_request`` that is an ``async def`` without any ``await`` (nor ``async for``
    or ``async with``) finishes on its first step; that is decided once per filter class from
    its bytecode. Anything else (a sub-request, a thread-pool hash) runs in a task, which also
    gives it the current task that timeouts and cancel scopes need.
    """
    cached = _CHAINS.get(id(chain))
    if cached is not None and cached[0] is chain:
        return cached[1]
    answer = True
    for item in chain.filters:
        kind = type(item)
        known = _NEVER_WAITS.get(kind)
        if known is None:
            known = _NEVER_WAITS[kind] = _cannot_suspend(getattr(kind, "on_request", None))
        answer = answer and known
    if len(_CHAINS) >= 4096:  # chains of replaced tables: start over rather than grow
        _CHAINS.clear()
    _CHAINS[id(chain)] = (chain, answer)
    return answer


def _cannot_suspend(function: Any) -> bool:
    if not inspect.iscoroutinefunction(function):
        return False
    try:
        return not any(op.opname in _SUSPENDING for op in dis.get_instructions(function))
    except TypeError:
        return False


def _run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that cannot suspend to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a filter chain that cannot suspend suspended")


_SKIPPED: dict[frozenset[bytes], frozenset[bytes]] = {}


def skipped(names: frozenset[bytes] | set[bytes]) -> frozenset[bytes]:
    """``names`` and the names the proxy never forwards, in one set (made once per filter's
    names: a filter drops the same frozenset on every response)."""
    if not isinstance(names, frozenset):
        return RESPONSE_DROPPED | names
    both = _SKIPPED.get(names)
    if both is None:
        if len(_SKIPPED) >= 1024:
            _SKIPPED.clear()
        both = _SKIPPED[names] = RESPONSE_DROPPED | names
    return both


def merged(
    headers: Headers,
    extra: list[HeaderBlock],
    names: frozenset[bytes] | set[bytes],
    prefixes: tuple[bytes, ...],
) -> Headers:
    """The upstream's headers less the dropped ones, plus the filters' blocks: the general
    path, for a filter that adds headers needing the proxy's handling (framing, hop-by-hop)."""
    kept = [(name, value) for name, value in headers if not dropped(name.lower(), names, prefixes)]
    for block in extra:
        kept.extend((name, value) for _, name, value in block.fields)
    return kept


def reply_bytes(reply: Reply, ident: bytes, head_only: bool, keep_alive: bool) -> bytes:
    status = reply.status
    phrase = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, phrase), ident, DATE.line()]
    parts.extend(b"%s: %s\r\n" % (name, value) for name, value in reply.headers)
    parts.append(b"content-length: %d\r\n" % len(reply.body))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(reply.body)
    return b"".join(parts)

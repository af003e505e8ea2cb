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

from pyingress.policy.filters import FilterChain, Reply, RequestView
from pyingress.proxy import errors
from pyingress.proxy.exchange import ProxyExchange, RequestHead
from pyingress.proxy.headers import DATE
from pyingress.routing.table import Route

if TYPE_CHECKING:
    from pyingress.proxy.client import ClientConnection

logger = logging.getLogger("pyingress.proxy")


class FilteredExchange(ProxyExchange):
    """A :class:`ProxyExchange` that first runs its route's filter chain."""

    __slots__ = ("chain", "view")

    def __init__(
        self, conn: ClientConnection, request: RequestHead, route: Route, chain: FilterChain
    ) -> None:
        super().__init__(conn, request, route)
        self.chain = chain
        self.view = RequestView(request, route)

    def start(self) -> None:
        conn, chain = self.conn, self.chain
        if chain.synchronous:
            # No coroutine, no task and no pause: those were the largest cost of policies.
            try:
                reply = chain.check(self.view)
            except Exception:
                self._failed()
                return
            if reply is None:
                self._forward()
            else:
                self.reply(reply)
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
        if self.done:
            return
        if reply is None:
            self._forward()
        else:
            self.reply(reply)

    def _failed(self) -> None:
        logger.exception("request filter failed for %s", self.route.ingress_name)
        if not self.done:
            self.respond_error(500, errors.INTERNAL)

    def _forward(self) -> None:
        """The filters let the request through: send it upstream with their edits (the header
        edits are on the request already)."""
        new_target = self.view.new_target
        if new_target is not None:
            self.request.target = new_target.encode("latin-1")
        backend = self.route.backend
        if not backend.endpoints:
            self.respond_error(503, backend.unavailable or errors.NO_ENDPOINTS)
            return
        super().start()

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        plan = self.chain.response_plan(self.view, status, headers)
        if plan is None:
            return self.write_head(status, reason, headers)
        if not plan.appendable:
            return self.write_head(status, reason, plan.apply(headers))
        return self.write_head(status, reason, headers, plan.data, plan.skip)

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

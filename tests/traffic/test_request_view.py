"""The filter-facing request view: header edits recorded, then applied in one pass."""

from __future__ import annotations

from types import SimpleNamespace

from pyingress.model import ObjectRef
from pyingress.policy.filters import (
    FilterChain,
    Headers,
    Reply,
    RequestEdit,
    RequestView,
    ResponseEdit,
    ResponsePlan,
)
from pyingress.proxy.exchange import upstream_request_head
from pyingress.routing.table import Backend, Endpoint, PathType, Route
from tests.support.views import request_head, request_view


def view(headers: Headers) -> RequestView:
    route = Route(ObjectRef("Ingress", "default", "web"), "app.example", "/", PathType.PREFIX,
                  Backend("default/app:80", ()))  # fmt: skip
    return request_view(route, headers=headers)


def test_request_edits_are_applied_in_order_without_touching_the_parsed_fields() -> None:
    head = request_head(headers=[(b"Host", b"a.example"), (b"Cookie", b"x=1"), (b"Cookie", b"y=2")])
    parsed = list(head.headers)
    request = RequestView(head, view([]).route)
    request.set_header(b"Host", b"internal.svc")
    request.remove_header(b"cookie")
    request.add_header(b"Cookie", b"kept=1")
    request.add_header(b"X-Extra", b"1")
    assert request.header(b"host") == b"internal.svc"
    assert request.header(b"cookie") == b"kept=1"
    forwarded = [(b"Host", b"internal.svc"), (b"Cookie", b"kept=1"), (b"X-Extra", b"1")]
    assert request.headers == forwarded
    assert head.headers == parsed
    request.remove_header(b"x-extra")
    assert request.header(b"x-extra") is None
    connection = SimpleNamespace(local_port=b"80")
    written = upstream_request_head(head, connection, Endpoint("10.0.0.5", 8080))  # type: ignore[arg-type]
    lines = written.split(b"\r\n")
    assert lines[1:3] == [b"Host: internal.svc", b"Cookie: kept=1"]
    assert b"X-Extra" not in written and b"x=1" not in written


def test_a_filters_prepared_edit_is_written_as_is_and_never_changed() -> None:
    shared = RequestEdit([(b"Host", b"internal.svc"), (b"X-Forwarded-Prefix", b"/api")])
    first = view([(b"Host", b"a.example")])
    first.edit_request(shared)
    first.add_header(b"X-One", b"1")
    head = request_head(headers=[(b"Host", b"b.example"), (b"Accept", b"*/*")])
    second = RequestView(head, first.route)
    second.edit_request(shared)
    assert shared.fields == ((b"host", b"Host", b"internal.svc"),
                             (b"x-forwarded-prefix", b"X-Forwarded-Prefix", b"/api"))  # fmt: skip
    assert first.headers == [(b"Host", b"internal.svc"), (b"X-Forwarded-Prefix", b"/api"),
                             (b"X-One", b"1")]  # fmt: skip
    written = upstream_request_head(head, SimpleNamespace(local_port=b"80"),  # type: ignore[arg-type]
                                    Endpoint("10.0.0.5", 8080))  # fmt: skip
    assert written.split(b"\r\n")[1:4] == [b"Accept: */*", b"Host: internal.svc",
                                           b"X-Forwarded-Prefix: /api"]  # fmt: skip
    assert RequestEdit([(b"Connection", b"close")]).lines is None  # the proxy's to handle


class Adds:
    handles_request = False

    def __init__(self, *headers: tuple[bytes, bytes], replace: bool = False) -> None:
        self.edit = ResponseEdit.setting(headers) if replace else ResponseEdit(headers)

    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> ResponseEdit:
        return self.edit


def test_a_later_filter_replaces_what_the_upstream_and_earlier_filters_set() -> None:
    chain = FilterChain((Adds((b"Vary", b"Origin"), (b"X-A", b"1")),
                         Adds((b"vary", b"Accept"), replace=True)))  # fmt: skip
    upstream = [(b"Content-Type", b"text/plain"), (b"VARY", b"Cookie")]
    chain.on_response(view([]), 200, upstream)
    assert upstream == [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"vary", b"Accept")]


def test_a_drop_spares_headers_added_after_it() -> None:
    chain = FilterChain((Adds((b"Access-Control-Max-Age", b"5")),
                         Adds((b"Access-Control-Allow-Origin", b"*"), replace=True),
                         Adds((b"access-control-max-age", b"7"), replace=True)))  # fmt: skip
    upstream = [(b"access-control-allow-origin", b"upstream"), (b"ETag", b'"1"')]
    chain.on_response(view([]), 200, upstream)
    assert upstream == [(b"ETag", b'"1"'), (b"Access-Control-Allow-Origin", b"*"),
                        (b"access-control-max-age", b"7")]  # fmt: skip


def test_edits_that_need_the_proxy_take_the_general_path() -> None:
    assert ResponsePlan([ResponseEdit([(b"X-Frame-Options", b"DENY")])]).appendable
    framing = ResponsePlan([ResponseEdit(drop=[b"X-Old"]),
                            ResponseEdit([(b"Connection", b"close")])])  # fmt: skip
    assert not framing.appendable
    headers = framing.apply([(b"ETag", b'"1"'), (b"X-Old", b"1")])
    assert headers == [(b"ETag", b'"1"'), (b"Connection", b"close")]


def test_the_same_edits_make_one_plan_and_one_off_edits_make_their_own() -> None:
    chain = FilterChain((Adds((b"X-Frame-Options", b"DENY")), Adds((b"Vary", b"Origin"))))
    first = chain.response_plan(view([]), 200, [])
    assert first is not None and chain.response_plan(view([]), 200, []) is first

    class Cookie:
        handles_request = False

        async def on_request(self, request: RequestView) -> Reply | None:
            return None

        def on_response(self, request: RequestView, status: int, headers: Headers) -> ResponseEdit:
            return ResponseEdit([(b"Set-Cookie", request.target.encode())], once=True)

    chain = FilterChain((Adds((b"X-Frame-Options", b"DENY")), Cookie()))
    request = view([])
    request.target = "/a"
    plan = chain.response_plan(request, 200, [])
    assert plan is not None and plan.data == b"X-Frame-Options: DENY\r\nSet-Cookie: /a\r\n"
    request.target = "/b"
    again = chain.response_plan(request, 200, [])
    assert again is not None and again.data == b"X-Frame-Options: DENY\r\nSet-Cookie: /b\r\n"


def test_a_chain_of_filters_with_check_runs_without_coroutines() -> None:
    class Refuses:
        handles_response = False

        async def on_request(self, request: RequestView) -> Reply | None:
            return self.check(request)

        def check(self, request: RequestView) -> Reply | None:
            return Reply(403, [(b"content-type", b"text/plain")])

        def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
            raise AssertionError("handles_response is False")

    chain = FilterChain((Refuses(), Adds((b"X-Frame-Options", b"DENY"))))
    assert chain.synchronous
    reply = chain.check(view([]))
    assert reply is not None and reply.status == 403
    assert reply.headers == [(b"content-type", b"text/plain"), (b"X-Frame-Options", b"DENY")]

    class Waits:
        async def on_request(self, request: RequestView) -> Reply | None:
            return None

        def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
            return None

    assert not FilterChain((Waits(),)).synchronous  # no check: it runs as a coroutine

"""The filter-facing request view: header edits recorded, then applied in one pass."""

from __future__ import annotations

from pyingress.model import ObjectRef
from pyingress.policy.filters import FilterChain, HeaderBlock, Headers, Reply, RequestView
from pyingress.proxy.filtered import merged
from pyingress.routing.table import Backend, PathType, Route


def view(headers: Headers) -> RequestView:
    route = Route(ObjectRef("Ingress", "default", "web"), "app.example", "/", PathType.PREFIX,
                  Backend("default/app:80", ()))  # fmt: skip
    return RequestView("GET", "/", "/", "", "app.example", "http", "192.0.2.7", headers, route)


def test_request_edits_are_applied_in_order_without_touching_the_parsed_fields() -> None:
    parsed = [(b"host", b"Host", b"a.example"), (b"cookie", b"Cookie", b"x=1"),
              (b"cookie", b"Cookie", b"y=2")]  # fmt: skip
    request = RequestView("GET", "/", "/", "", "a.example", "http", "192.0.2.7", (),
                          view([]).route, parsed)  # fmt: skip
    assert request.edited_fields() is None
    request.set_header(b"Host", b"internal.svc")
    request.remove_header(b"cookie")
    request.add_header(b"Cookie", b"kept=1")
    request.add_header(b"X-Extra", b"1")
    assert request.header(b"host") == b"internal.svc"
    assert request.header(b"cookie") == b"kept=1"
    forwarded = [(b"Host", b"internal.svc"), (b"Cookie", b"kept=1"), (b"X-Extra", b"1")]
    assert request.headers == forwarded
    assert parsed[0] == (b"host", b"Host", b"a.example") and len(parsed) == 3
    request.remove_header(b"x-extra")
    assert request.header(b"x-extra") is None


class Adds:
    handles_request = False

    def __init__(self, *headers: tuple[bytes, bytes], replace: bool = False) -> None:
        self.block = HeaderBlock(headers)
        self.replace = replace

    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        if self.replace:
            request.drop_response_headers(self.block.names)
        request.add_response_block(self.block)


class DropsPrefix:
    async def on_request(self, request: RequestView) -> Reply | None:
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        request.drop_response_prefix(b"access-control-")


def test_a_later_filter_replaces_what_the_upstream_and_earlier_filters_set() -> None:
    chain = FilterChain((Adds((b"Vary", b"Origin"), (b"X-A", b"1")),
                         Adds((b"vary", b"Accept"), replace=True)))  # fmt: skip
    upstream = [(b"Content-Type", b"text/plain"), (b"VARY", b"Cookie")]
    chain.on_response(view([]), 200, upstream)
    assert upstream == [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"vary", b"Accept")]


def test_a_prefix_drop_spares_headers_added_after_it() -> None:
    chain = FilterChain((Adds((b"Access-Control-Max-Age", b"5")), DropsPrefix(),
                         Adds((b"Access-Control-Allow-Origin", b"*"))))  # fmt: skip
    upstream = [(b"access-control-allow-origin", b"upstream"), (b"ETag", b'"1"')]
    chain.on_response(view([]), 200, upstream)
    assert upstream == [(b"ETag", b'"1"'), (b"Access-Control-Allow-Origin", b"*")]


def test_blocks_that_need_the_proxy_take_the_general_path() -> None:
    assert HeaderBlock([(b"X-Frame-Options", b"DENY")]).appendable
    framing = HeaderBlock([(b"Connection", b"close")])
    assert not framing.appendable
    headers = merged([(b"ETag", b'"1"'), (b"X-Old", b"1")], [framing], frozenset({b"x-old"}), ())
    assert headers == [(b"ETag", b'"1"'), (b"Connection", b"close")]


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
    assert not FilterChain((DropsPrefix(),)).synchronous  # no check: it runs as a coroutine

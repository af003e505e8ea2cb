"""Every failure gets the right status and a small page that leaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from pyingress.proxy import ProxyConfig
from tests.proxy.helpers import RawClient, backend, get, read_request, route, table
from tests.support.net import free_port


def assert_clean_page(body: bytes, *words: str) -> None:
    text = body.decode()
    assert text.startswith("<html>")
    for word in words:
        assert word in text
    assert "127.0.0.1" not in text and "Error" not in text and "Traceback" not in text


async def request(port: int, data: bytes | None = None):  # type: ignore[no-untyped-def]
    client = await RawClient.open(port)
    await client.send(data or get())
    response = await client.response()
    client.close()
    return response


async def test_404_when_no_route(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port), host="a.test")))
    response = await request(proxy.port, get(host="b.test"))
    assert response.status == 404
    assert response.header("server") == "pyingress" and response.header("date")
    assert_clean_page(response.body, "404 Not Found", "no route")


async def test_503_when_no_ready_endpoint(proxy_factory) -> None:
    empty = backend("default/app:80", unavailable="service default/app has no ready endpoints")
    proxy = await proxy_factory(table(route(empty)))
    response = await request(proxy.port)
    assert response.status == 503
    assert_clean_page(response.body, "503 Service Unavailable", "has no ready endpoints")


async def test_502_when_upstream_refuses(proxy_factory) -> None:
    closed_port = free_port()  # nothing listens there
    proxy = await proxy_factory(table(route(backend("default/app:80", closed_port))))
    response = await request(proxy.port)
    assert response.status == 502
    assert_clean_page(response.body, "502 Bad Gateway", "refused")
    sample = proxy.registry.get_sample_value
    assert sample("pyingress_upstream_connect_errors_total", {"service": "default/app:80"}) == 1


@pytest.mark.parametrize(
    "reply",
    [b"", b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Len"],
    ids=["closed", "garbage", "truncated-head"],
)
async def test_502_when_upstream_breaks_before_a_response(scripted, proxy_factory, reply) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    response = await request(proxy.port)
    assert response.status == 502
    assert_clean_page(response.body, "502 Bad Gateway")


async def test_truncated_body_is_a_truncated_response(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get())
    with pytest.raises(ConnectionError):
        await client.response()  # the client must not mistake it for a complete response
    client.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port whose accept queue is full, so new connections hang in SYN-SENT (no RST)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


async def test_504_on_connect_timeout(proxy_factory, blackhole_port) -> None:
    config = ProxyConfig(connect_timeout=0.5)
    proxy = await proxy_factory(table(route(backend("default/app:80", blackhole_port))), config)
    response = await request(proxy.port)
    assert response.status == 504
    assert_clean_page(response.body, "504 Gateway Timeout", "connect timed out")


async def test_504_on_read_timeout(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    back = await scripted(handler)
    config = ProxyConfig(read_timeout=0.5)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))), config)
    response = await request(proxy.port)
    assert response.status == 504
    assert_clean_page(response.body, "504 Gateway Timeout", "read timed out")


async def test_read_timeout_is_an_idle_gap_not_a_total(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):  # 8 x 0.15 s > the 0.5 s read timeout, but no gap is longer
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    back = await scripted(handler)
    config = ProxyConfig(read_timeout=0.5)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))), config)
    response = await request(proxy.port)
    assert (response.status, response.body) == (200, b"x" * 8)


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
    ids=["garbage", "bad-header", "no-host"],
)
async def test_400_for_malformed_requests_closes_the_connection(echo, proxy_factory, data) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    await client.send(data)
    response = await client.response()
    assert response.status == 400
    assert response.header("connection") == "close"
    assert_clean_page(response.body, "400 Bad Request")
    assert await client.closed()


async def test_431_for_oversized_headers(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    big = "".join(f"X-Big-{i}: {'v' * 1000}\r\n" for i in range(40))
    await client.send(get(extra=big))
    response = await client.response()
    assert response.status == 431
    assert_clean_page(response.body, "431 Request Header Fields Too Large")
    assert await client.closed()
    # just under the limit is fine
    ok = "".join(f"X-Big-{i}: {'v' * 1000}\r\n" for i in range(30))
    response = await request(proxy.port, get(extra=ok))
    assert response.status == 200


async def test_head_error_page_has_no_body(proxy_factory) -> None:
    proxy = await proxy_factory(table())
    client = await RawClient.open(proxy.port)
    await client.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + get())
    head = await client.head_response()
    assert head.startswith(b"HTTP/1.1 404 ")
    response = await client.response()  # the next response starts right after the head
    client.close()
    assert response.status == 404


async def test_conflicting_body_framing_is_rejected(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    smuggle = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    response = await request(proxy.port, smuggle)
    assert response.status == 400

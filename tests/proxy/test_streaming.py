"""Bodies stream both ways with their framing; WebSockets and SSE pass through unbuffered."""

from __future__ import annotations

import asyncio

import httpx
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route as StarletteRoute

from tests.proxy.helpers import RawClient, backend, get, read_request, route, table


def reply_with(raw: bytes):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await reader.read()

    return handler


async def test_chunked_response_stays_chunked(scripted, proxy_factory) -> None:
    back = await scripted(
        reply_with(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
        )
    )
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get())
    response = await client.response()
    client.close()
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-length") is None
    assert response.body == b"hello world"
    assert response.chunks >= 2  # re-framed, not collapsed into one Content-Length body


async def test_content_length_is_kept(scripted, proxy_factory) -> None:
    back = await scripted(reply_with(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"))
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get())
    response = await client.response()
    client.close()
    assert response.header("content-length") == "11"
    assert response.header("transfer-encoding") is None
    assert response.body == b"hello world"


async def test_body_until_close_is_chunked_for_http11_clients(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    for _ in range(2):  # the client connection survives the upstream closing
        await client.send(get())
        response = await client.response()
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == b"part one, part two"
    client.close()


async def test_chunked_request_body_is_forwarded_chunked(scripted, proxy_factory) -> None:
    seen: list[tuple[dict[bytes, bytes], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, body = await read_request(reader)
            seen.append((headers, body))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))

    async def parts():  # type: ignore[no-untyped-def]
        for piece in (b"abc", b"defg", b"h" * 70000):
            yield piece

    async with httpx.AsyncClient(base_url=proxy.url) as client:
        chunked = await client.post("/", content=parts())
        sized = await client.post("/", content=b"x" * 1000)
    assert chunked.content == b"abcdefg" + b"h" * 70000
    assert seen[0][0][b"transfer-encoding"] == b"chunked" and b"content-length" not in seen[0][0]
    assert sized.content == b"x" * 1000
    assert seen[1][0][b"content-length"] == b"1000"


async def test_server_sent_events_are_not_buffered(scripted, proxy_factory) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: one\n\n")
        await writer.drain()
        await release.wait()  # the second event waits until the client has seen the first
        writer.write(b"data: two\n\n")
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    async with (
        httpx.AsyncClient(base_url=proxy.url) as client,
        client.stream("GET", "/events") as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 10) == "data: one"
        release.set()
        rest = [line async for line in lines if line]
    assert rest == ["data: two"]


async def test_websocket_relay(proxy_factory) -> None:
    async def echo_ws(connection: websockets.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with websockets.serve(echo_ws, "127.0.0.1", 0) as ws_server:
        ws_port = ws_server.sockets[0].getsockname()[1]
        proxy = await proxy_factory(table(route(backend("default/ws:80", ws_port))))
        uri = f"ws://127.0.0.1:{proxy.port}/chat"
        async with websockets.connect(uri) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            blob = bytes(range(256)) * 1000
            await ws.send(blob)
            assert await ws.recv() == blob
        # the tunnel is torn down with the client; the proxy keeps serving
        async with websockets.connect(uri) as ws:
            await ws.send("again")
            assert await ws.recv() == "again"
    sample = proxy.registry.get_sample_value
    labels = {"ingress": "default/web", "host": "", "status": "101"}
    assert sample("pyingress_requests_total", labels) == 2


async def test_upgrade_declined_by_upstream(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get(extra="Connection: Upgrade\r\nUpgrade: websocket\r\n"))
    response = await client.response()
    assert response.status == 200
    assert await client.closed()


async def test_mounted_asgi_app(echo, proxy_factory) -> None:
    async def token(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"token for {request.path_params['name']}")

    async def upload(request: Request) -> StreamingResponse:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)

        async def body():  # type: ignore[no-untyped-def]
            yield b"got "
            yield str(total).encode()

        return StreamingResponse(body())

    app = Starlette(
        routes=[
            StarletteRoute("/.well-known/acme-challenge/{name}", token),
            StarletteRoute("/.well-known/acme-challenge/upload/", upload, methods=["POST"]),
        ]
    )
    backend_app = await echo("app")
    proxy = await proxy_factory(table(route(backend("default/app:80", backend_app.port))))
    proxy.server.mount("/.well-known/acme-challenge/", app)
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        response = await client.get("/.well-known/acme-challenge/abc", headers={"Host": "any.test"})
        assert (response.status_code, response.text) == (200, "token for abc")
        assert response.headers["server"] == "pyingress"
        response = await client.post("/.well-known/acme-challenge/upload/", content=b"z" * 300000)
        assert (response.status_code, response.text) == (200, "got 300000")
        assert response.headers["transfer-encoding"] == "chunked"
        # other paths still go to the route table
        assert (await client.get("/.well-known/other")).json()["name"] == "app"


async def test_failing_asgi_app_gives_500(proxy_factory) -> None:
    async def broken(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("boom with secret detail")

    proxy = await proxy_factory(table())
    proxy.server.mount("/cb", broken)
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        response = await client.get("/cb")
    assert response.status_code == 500
    assert "secret" not in response.text


async def test_chunked_response_to_http10_client_is_delimited_by_close(
    scripted, proxy_factory
) -> None:
    back = await scripted(
        reply_with(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n3\r\n 10\r\n0\r\n\r\n"
        )
    )
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = await client.reader.readuntil(b"\r\n\r\n")
    body = await client.reader.read()  # until the proxy closes: HTTP/1.0 has no chunked framing
    client.close()
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"hello 10"

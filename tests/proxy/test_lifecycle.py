"""Connections across table swaps, idle timeouts and shutdown."""

from __future__ import annotations

import asyncio

import httpx

from pyingress.proxy import ProxyConfig
from tests.proxy.helpers import RawClient, backend, get, read_request, route, table
from tests.support.net import wait_until_async


async def test_table_swaps_under_load_fail_no_request(echo, proxy_factory) -> None:
    blue, green = await echo("blue"), await echo("green")
    tables = [
        table(route(backend("default/app:80", blue.port)), generation=1),
        table(route(backend("default/app:80", green.port)), generation=2),
    ]
    proxy = await proxy_factory(tables[0])
    stop = asyncio.Event()
    swaps = 0

    async def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            swaps += 1
            proxy.publish(tables[swaps % 2])
            await asyncio.sleep(0.001)

    async def worker() -> list[tuple[int, str]]:
        results = []
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            for _ in range(150):
                response = await client.get("/")
                results.append((response.status_code, response.json()["name"]))
        return results

    swapping = asyncio.create_task(swapper())
    results = [r for batch in await asyncio.gather(*(worker() for _ in range(4))) for r in batch]
    stop.set()
    await swapping
    assert swaps > 10
    assert {status for status, _ in results} == {200}
    assert {name for _, name in results} == {"blue", "green"}


async def test_idle_keepalive_connections_are_closed(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(
        table(route(backend("default/app:80", app.port))), ProxyConfig(keepalive_timeout=0.3)
    )
    client = await RawClient.open(proxy.port)
    await client.send(get())
    assert (await client.response()).status == 200
    assert await asyncio.wait_for(client.closed(), 10)


async def test_client_leaving_mid_response_drops_the_upstream(scripted, proxy_factory) -> None:
    upstream_closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nstart")
        await writer.drain()
        await reader.read()  # returns when the proxy closes its side
        upstream_closed.set()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get())
    await client.reader.readuntil(b"start")
    client.close()
    await asyncio.wait_for(upstream_closed.wait(), 10)
    labels = {"ingress": "default/web", "host": "", "status": "499"}
    await wait_until_async(
        lambda: asyncio.sleep(
            0, proxy.registry.get_sample_value("pyingress_requests_total", labels)
        )
    )


async def test_close_finishes_in_flight_requests(scripted, proxy_factory) -> None:
    release = asyncio.Event()
    received = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        received.set()
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        await writer.drain()
        await reader.read()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    idle = await RawClient.open(proxy.port)
    busy = await RawClient.open(proxy.port)
    await busy.send(get())
    await asyncio.wait_for(received.wait(), 10)

    closing = asyncio.create_task(proxy.server.close(grace=20))
    assert await asyncio.wait_for(idle.closed(), 10)  # idle keep-alive connections go at once
    refused = False
    try:
        await asyncio.open_connection("127.0.0.1", proxy.port)
    except OSError:
        refused = True
    assert refused
    assert not closing.done()
    release.set()
    response = await busy.response()
    assert (response.status, response.body) == (200, b"done")
    assert response.header("connection") == "close"
    await asyncio.wait_for(closing, 10)
    assert await busy.closed()


async def test_two_servers_share_a_port_with_reuse_port(echo) -> None:
    from pyingress.proxy import ProxyServer
    from pyingress.routing.table import TableHolder
    from tests.support.net import free_port

    app = await echo("shared")
    holder = TableHolder(table(route(backend("default/app:80", app.port))))
    port = free_port()
    servers = [ProxyServer(holder), ProxyServer(holder)]
    try:
        for server in servers:
            await server.listen("127.0.0.1", port, reuse_port=True)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
        assert response.json()["name"] == "shared"
    finally:
        for server in servers:
            await server.close(grace=1.0)

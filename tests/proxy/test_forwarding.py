"""Requests reach the right backend with the right headers; responses come back framed right."""

from __future__ import annotations

import asyncio
import json
import re

import httpx

from tests.proxy.helpers import RawClient, backend, get, read_request, route, table


async def test_forwards_to_echo_with_forwarded_headers(echo, proxy_factory) -> None:
    app = await echo("app")
    proxy = await proxy_factory(
        table(route(backend("default/app:80", app.port), host="example.com"))
    )
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{proxy.url}/a/b?x=1&y=2", headers={"Host": "Example.com:8080"}
        )
    assert response.status_code == 200
    assert response.headers["server"] == "pyingress"
    assert response.headers["date"].endswith("GMT")
    seen = response.json()
    assert seen["name"] == "app"
    assert (seen["path"], seen["query"]) == ("/a/b", "x=1&y=2")
    headers = seen["headers"]
    assert headers["host"] == "Example.com:8080"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "Example.com:8080"
    assert headers["x-forwarded-port"] == str(proxy.port)
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])


async def test_request_ids_are_fresh_unless_the_client_sent_one(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        first = (await client.get("/")).json()["headers"]["x-request-id"]
        second = (await client.get("/")).json()["headers"]["x-request-id"]
        kept = (await client.get("/", headers={"X-Request-ID": "abc-123"})).json()
    assert first != second
    assert kept["headers"]["x-request-id"] == "abc-123"


async def test_incoming_forwarded_headers_are_replaced(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    spoofed = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Real-IP": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "1",
    }
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        headers = (await client.get("/", headers=spoofed)).json()["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"
    assert headers["x-forwarded-port"] == str(proxy.port)


async def test_client_identity_headers_never_reach_an_upstream(echo, proxy_factory) -> None:
    """Only pyingress's own auth may say who the user is, on every route."""
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    forged = {
        "X-Auth-Request-User": "admin",
        "X-Auth-Request-Email": "admin@example.com",
        "x-auth-request-groups": "admins",
        "X-Other": "kept",
    }
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        headers = (await client.get("/", headers=forged)).json()["headers"]
    assert not [name for name in headers if name.startswith("x-auth-request-")]
    assert headers["x-other"] == "kept"


async def test_hop_by_hop_request_headers_are_stripped(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    await client.send(
        get(
            "/",
            extra="Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
            "TE: trailers\r\nTrailer: X-T\r\nProxy: http://attacker:3128\r\n"
            "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
            "Upgrade: h2c\r\nX-End-To-End: kept\r\n",
        )
    )
    response = await client.response()
    client.close()
    headers = json.loads(response.body)["headers"]
    for name in (
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ):
        assert name not in headers, name
    assert headers["x-end-to-end"] == "kept"


async def test_hop_by_hop_response_headers_are_stripped(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nServer: secret-backend/1.0\r\n"
            b"Date: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
            b"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=3\r\n"
            b"Proxy-Authorization: x\r\nTrailer: X-T\r\nX-Public: yes\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        await reader.read()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get())
    response = await client.response()
    client.close()
    assert response.body == b"ok"
    assert response.header("server") == "pyingress"
    assert response.header("date") != "Mon, 01 Jan 2001 00:00:00 GMT"
    assert response.header("x-public") == "yes"
    assert not {"x-private", "keep-alive", "proxy-authorization", "trailer", "connection"} & (
        response.names()
    )


async def test_round_robin_across_endpoints(echo, proxy_factory) -> None:
    backends = [await echo(f"e{i}") for i in range(3)]
    proxy = await proxy_factory(
        table(route(backend("default/app:80", *(b.port for b in backends))))
    )
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        names = [(await client.get("/")).json()["name"] for _ in range(9)]
    assert names[:3] == ["e0", "e1", "e2"]
    assert names == names[:3] * 3


async def test_new_endpoints_take_effect_on_the_next_request(echo, proxy_factory) -> None:
    old, new = await echo("old"), await echo("new")
    proxy = await proxy_factory(table(route(backend("default/app:80", old.port))))
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        assert (await client.get("/")).json()["name"] == "old"
        proxy.publish(table(route(backend("default/app:80", new.port))))
        assert [(await client.get("/")).json()["name"] for _ in range(3)] == ["new"] * 3


async def test_routes_by_host_and_path(echo, proxy_factory) -> None:
    api, web, other = await echo("api"), await echo("web"), await echo("other")
    proxy = await proxy_factory(
        table(
            route(backend("default/api:80", api.port), host="example.com", path="/api"),
            route(backend("default/web:80", web.port), host="example.com", path="/"),
            route(backend("default/other:80", other.port), host="*.other.test", path="/"),
        )
    )
    async with httpx.AsyncClient(base_url=proxy.url) as client:

        async def name(path: str, host: str) -> str:
            return str((await client.get(path, headers={"Host": host})).json()["name"])

        assert await name("/api/v1", "example.com") == "api"
        assert await name("/apiv1", "example.com") == "web"
        assert await name("/x", "www.other.test") == "other"
        # routed by the normalised path, forwarded with the original target
        response = await client.get("/x/../api/%76?q=%2F", headers={"Host": "example.com"})
        assert response.json()["name"] == "api"


async def test_original_target_is_forwarded_unchanged(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    await client.send(get("/a//b/%2e%2e/c?x=%41&y"))
    response = await client.response()
    client.close()
    seen = json.loads(response.body)
    assert (seen["path"], seen["query"]) == ("/a//b/%2e%2e/c", "x=%41&y")


async def test_pooled_upstream_connections_are_reused(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    remotes = set()
    for _ in range(5):
        async with httpx.AsyncClient(
            base_url=proxy.url
        ) as client:  # new client connection each time
            remotes.add((await client.get("/")).json()["remote"])
    assert len(remotes) == 1


async def test_upstream_connection_close_is_not_pooled(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        for _ in range(3):
            response = await client.get("/")
            assert response.text == "ok"
            assert "connection" not in response.headers  # the client connection stays open
    assert back.connections == 3


async def test_stale_pooled_connections_are_retried(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # answers keep-alive, then closes without saying so
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        statuses = [(await client.get("/")).status_code for _ in range(20)]
    assert statuses == [200] * 20


async def test_http10_client(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    await client.send(b"GET /old HTTP/1.0\r\n\r\n")
    response = await client.response()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert b'"path": "/old"' in response.body
    assert await client.closed()

    client = await RawClient.open(proxy.port)
    for _ in range(2):
        await client.send(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = await client.response()
        assert response.status == 200
        assert response.header("connection") == "keep-alive"
    client.close()


async def test_pipelined_requests_are_answered_in_order(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(
        table(route(backend("default/app:80", app.port), host="example.com"))
    )
    client = await RawClient.open(proxy.port)
    await client.send(get("/1") + get("/2", host="nowhere.test") + get("/3"))
    statuses = [(await client.response()) for _ in range(3)]
    client.close()
    assert [r.status for r in statuses] == [200, 404, 200]
    assert b'"/1"' in statuses[0].body and b'"/3"' in statuses[2].body


async def test_head_response_has_no_body_and_connection_stays_usable(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(table(route(backend("default/app:80", app.port))))
    client = await RawClient.open(proxy.port)
    for _ in range(2):
        await client.send(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        head = await client.head_response()
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"content-length: " in head.lower()
    await client.send(get("/after"))
    response = await client.response()  # a HEAD body would corrupt this response
    client.close()
    assert response.status == 200 and b'"/after"' in response.body


async def test_expect_100_continue(scripted, proxy_factory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, body = await read_request(reader)
        assert b"expect" not in headers
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.read()

    back = await scripted(handler)
    proxy = await proxy_factory(table(route(backend("default/app:80", back.port))))
    client = await RawClient.open(proxy.port)
    await client.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.reader.readuntil(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    await client.send(b"hello")
    response = await client.response()
    client.close()
    assert response.body == b"hello"


async def test_metrics_count_requests(echo, proxy_factory) -> None:
    app = await echo()
    proxy = await proxy_factory(
        table(route(backend("default/app:80", app.port), host="example.com"))
    )
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        for _ in range(3):
            await client.get("/", headers={"Host": "example.com"})
        await client.get("/", headers={"Host": "unknown.test"})
    sample = proxy.registry.get_sample_value
    labels = {"ingress": "default/web", "host": "example.com", "status": "200"}
    assert sample("pyingress_requests_total", labels) == 3
    assert sample("pyingress_requests_total", {"ingress": "", "host": "", "status": "404"}) == 1
    count = sample(
        "pyingress_request_duration_seconds_count",
        {"ingress": "default/web", "host": "example.com"},
    )
    assert count == 3

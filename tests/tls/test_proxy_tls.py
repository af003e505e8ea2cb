"""The certificate store behind the real proxy: HTTPS to a backend, SNI, hot swap, ACME mount."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pyingress.echo import EchoServer
from pyingress.model import Snapshot
from pyingress.proxy import ProxyServer
from pyingress.routing.table import (
    Backend,
    Endpoint,
    HostRoutes,
    PathType,
    Route,
    RouteTable,
    TableHolder,
)
from pyingress.tls.acme.responder import CHALLENGE_PREFIX, ChallengeResponder
from pyingress.tls.certstore import CertificateStore
from tests.tls.conftest import INGRESS, LocalCA, client_context, peer_names, table_for, tls_secret

HOST = "app.example.com"


def routed_table(port: int, tls: dict[str, str | None]) -> RouteTable:
    table = table_for(tls)
    routes = HostRoutes()
    backend = Backend("default/app:80", (Endpoint("127.0.0.1", port),))
    routes.add(Route(INGRESS, HOST, "/", PathType.PREFIX, backend))
    table.exact_hosts[HOST] = routes
    return table


class Proxy:
    def __init__(self, server: ProxyServer, https_port: int, http_port: int) -> None:
        self.server = server
        self.https_port = https_port
        self.http_port = http_port


@pytest.fixture
async def proxy(ca: LocalCA) -> AsyncIterator[tuple[Proxy, CertificateStore, RouteTable]]:
    backend = EchoServer("app")
    await backend.start()
    table = routed_table(backend.port, {HOST: "app-tls"})
    store = CertificateStore()
    assert store.update(Snapshot.of([tls_secret("app-tls", *ca.issue(HOST))]), table) == []
    server = ProxyServer(TableHolder(table))
    https = await server.listen("127.0.0.1", 0, ssl=store.listening_context, scheme="https")
    http = await server.listen("127.0.0.1", 0)
    try:
        yield (
            Proxy(server, https.sockets[0].getsockname()[1], http.sockets[0].getsockname()[1]),
            store,
            table,
        )
    finally:
        await server.close(grace=1.0)
        await backend.close()


def _get(tls: Any, host: str, target: str = "/") -> tuple[int, dict[str, Any]]:
    tls.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += tls.recv(65536)
    return int(lines[0].split()[1]), json.loads(body) if body else {}


class Client:
    """A blocking keep-alive TLS client, driven from a thread so the proxy's loop keeps running."""

    def __init__(self, port: int, server_name: str | None, ca_pem: bytes | None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = client_context(ca_pem).wrap_socket(raw, server_hostname=server_name)

    def names(self) -> set[str]:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return peer_names(der)[0]

    def get(self, host: str, target: str = "/") -> tuple[int, dict[str, Any]]:
        return _get(self.tls, host, target)

    def close(self) -> None:
        self.tls.close()


async def _connect(port: int, server_name: str | None, ca_pem: bytes | None = None) -> Client:
    return await asyncio.to_thread(Client, port, server_name, ca_pem)


async def test_https_request_reaches_backend_with_the_sni_certificate(
    proxy: tuple[Proxy, CertificateStore, RouteTable], ca: LocalCA
) -> None:
    running, _, _ = proxy
    client = await _connect(running.https_port, HOST, ca.pem)
    try:
        assert client.names() == {HOST}
        status, echoed = await asyncio.to_thread(client.get, HOST, "/hello?x=1")
    finally:
        client.close()
    assert status == 200
    assert (echoed["name"], echoed["path"], echoed["query"]) == ("app", "/hello", "x=1")
    assert echoed["headers"]["x-forwarded-proto"] == "https"


async def test_hot_swap_through_the_proxy_keeps_open_connection(
    proxy: tuple[Proxy, CertificateStore, RouteTable], ca: LocalCA
) -> None:
    running, store, table = proxy
    kept = await _connect(running.https_port, HOST, ca.pem)
    try:
        assert (await asyncio.to_thread(kept.get, HOST))[0] == 200
        swapped = Snapshot.of([tls_secret("app-tls", *ca.issue(HOST, "v2.example.com"))])
        assert store.update(swapped, table) == []

        fresh = await _connect(running.https_port, HOST, ca.pem)
        try:
            assert fresh.names() == {HOST, "v2.example.com"}
            assert (await asyncio.to_thread(fresh.get, HOST))[0] == 200
        finally:
            fresh.close()
        # The connection opened before the swap still serves, on its original certificate.
        assert (await asyncio.to_thread(kept.get, HOST))[0] == 200
        assert kept.names() == {HOST}
    finally:
        kept.close()


async def test_unknown_name_and_no_sni_get_the_default_certificate(
    proxy: tuple[Proxy, CertificateStore, RouteTable],
) -> None:
    running, store, _ = proxy
    for name in (None, "unknown.test"):
        client = await _connect(running.https_port, name)
        try:
            der = client.tls.getpeercert(binary_form=True)
            assert der == store.self_signed.leaf.public_bytes(Encoding.DER)
        finally:
            client.close()


async def test_acme_challenge_is_answered_on_the_plain_http_listener(
    proxy: tuple[Proxy, CertificateStore, RouteTable],
) -> None:
    running, _, _ = proxy
    responder = ChallengeResponder()
    running.server.mount(CHALLENGE_PREFIX, responder)
    responder.add("tok-1", "tok-1.thumb")

    def fetch(target: str) -> bytes:
        with socket.create_connection(("127.0.0.1", running.http_port), timeout=10) as sock:
            sock.sendall(
                f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    answer = await asyncio.to_thread(fetch, CHALLENGE_PREFIX + "tok-1")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\ntok-1.thumb")
    missing = await asyncio.to_thread(fetch, CHALLENGE_PREFIX + "other")
    assert missing.startswith(b"HTTP/1.1 404")

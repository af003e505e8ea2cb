"""The TLS service as ``serve`` runs it: store -> compiler -> certificates -> HTTPS listener."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyingress.controller import Reconciler
from pyingress.proxy import ProxyServer
from pyingress.routing.compiler import CompileOptions
from pyingress.routing.table import TableHolder
from pyingress.sources.store import ObjectStore
from pyingress.tls.service import TLSService, add_arguments
from pyingress.tls.trust import TrustedProxies
from tests.support import manifests as m
from tests.support.net import free_port, wait_until_async
from tests.tls.conftest import LocalCA, handshake

HOST = "app.example.com"


def objects(ca: LocalCA, *names: str) -> list[dict[str, Any]]:
    return [
        m.ingress_class(),
        m.service("app"),
        m.endpoint_slice("app", ["127.0.0.1"], 9),
        m.ingress(
            "web",
            [m.rule(HOST, m.path("/", "app"))],
            tls=[{"hosts": [HOST], "secretName": "app-tls"}],
        ),
        m.secret_tls("app-tls", *ca.issue(*(names or (HOST,)))),
    ]


@pytest.fixture
async def running(ca: LocalCA) -> AsyncIterator[tuple[TLSService, ObjectStore, int]]:
    store = ObjectStore()
    store.update(objects(ca))
    holder = TableHolder()
    reconciler = Reconciler(store, holder, CompileOptions())
    task = asyncio.create_task(reconciler.run())
    await reconciler.wait_compiled(store.version)
    proxy = ProxyServer(holder)
    port = free_port()
    args = argparse.Namespace(bind="127.0.0.1", https_port=port, default_ssl_certificate=None,
                              trusted_proxies=TrustedProxies(), acme_storage=None)  # fmt: skip
    service = TLSService(args)
    await service.start(proxy, store, holder, reconciler)
    try:
        yield service, store, port
    finally:
        await service.close()
        await proxy.close(grace=1.0)
        task.cancel()


async def test_certificates_follow_the_store(
    running: tuple[TLSService, ObjectStore, int], ca: LocalCA
) -> None:
    service, store, port = running
    assert service.problems == []
    first = await asyncio.to_thread(handshake, port, HOST, ca.pem)
    assert first.names == {HOST}

    store.update(objects(ca, HOST, "second.example.com"))

    async def renewed() -> bool:
        seen = await asyncio.to_thread(handshake, port, HOST, ca.pem)
        return seen.names == {HOST, "second.example.com"}

    await wait_until_async(renewed, what="the new certificate to be served")

    broken = m.secret_tls("app-tls", b"garbage", b"garbage")
    store.update([broken])

    async def reported() -> bool:
        return any(p.reason == "InvalidCertificate" for p in service.problems)

    await wait_until_async(reported, what="the bad Secret to be reported")
    kept = await asyncio.to_thread(handshake, port, HOST, ca.pem)
    assert kept.names == {HOST, "second.example.com"}


def test_flags_parse() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--trusted-proxies", "cloudflare,10.0.0.0/8", "--acme-email", "a@b.c"]
    )
    assert "10.1.2.3" in args.trusted_proxies and "173.245.48.1" in args.trusted_proxies
    assert args.acme_directory.startswith("https://acme-v02.api.letsencrypt.org/")
    with pytest.raises(SystemExit):
        parser.parse_args(["--trusted-proxies", "10.0.0.0/33"])

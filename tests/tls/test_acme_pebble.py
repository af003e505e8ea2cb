"""Built-in ACME end to end against Let's Encrypt's test CA (Pebble) on loopback."""

from __future__ import annotations

import asyncio
import datetime
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyingress.model import ObjectRef, Snapshot
from pyingress.proxy import ProxyServer
from pyingress.routing.table import TableHolder
from pyingress.tls.acme.client import AcmeClient, http_client
from pyingress.tls.acme.manager import AcmeManager, load_account_key
from pyingress.tls.acme.responder import CHALLENGE_PREFIX, ChallengeResponder
from pyingress.tls.acme.sink import ACCOUNT_KEY_FILE, FolderSink
from pyingress.tls.certstore import CertificateStore
from tests.support.net import free_port, wait_until_async
from tests.tls import pebble as pebble_support
from tests.tls.conftest import TinyTLSServer, handshake, table_for

pytestmark = pytest.mark.skipif(not pebble_support.available(), reason=pebble_support.MISSING)


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pebble_support.Pebble]:
    ca = pebble_support.Pebble(tmp_path_factory.mktemp("pebble"), http_port=free_port())
    try:
        yield ca
    finally:
        ca.stop()


class Gate:
    """The port-80 app: the ACME responder, or a plain 404 while ``open`` is False."""

    def __init__(self, responder: ChallengeResponder) -> None:
        self.responder = responder
        self.open = True
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        if self.open:
            await self.responder(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"closed"})


@pytest.fixture
async def port80(pebble: pebble_support.Pebble) -> AsyncIterator[Gate]:
    """The proxy's plain-HTTP listener where Pebble's validator looks, with the responder
    mounted the way ``serve`` mounts it."""
    gate = Gate(ChallengeResponder())
    proxy = ProxyServer(TableHolder())
    proxy.mount(CHALLENGE_PREFIX, gate)
    await proxy.listen("127.0.0.1", pebble.http_port)
    try:
        yield gate
    finally:
        await proxy.close(grace=1.0)


def ingress(host: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {"pyingress.io/acme": "true"},
        },
        "spec": {"tls": [{"hosts": [host], "secretName": secret}], "rules": [{"host": host}]},
    }


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
async def acme(
    pebble: pebble_support.Pebble, port80: Gate, tmp_path: Path
) -> AsyncIterator[tuple[AcmeManager, FolderSink, Clock, Gate]]:
    sink = FolderSink(tmp_path / "acme")
    key = await load_account_key(sink)
    client = AcmeClient(
        pebble.directory_url,
        key,
        email="admin@example.org",
        http=http_client(str(pebble.ca_bundle)),
        poll_interval=0.1,
    )
    clock = Clock()
    manager = AcmeManager(
        client,
        sink,
        port80.responder,
        clock=clock,
        retry_base=0.2,
        check_interval=0.2,
        jitter=lambda: 0.5,
    )
    task = asyncio.create_task(manager.run())
    try:
        yield manager, sink, clock, port80
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()


def _secret(sink: FolderSink, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        sink.path_for(ObjectRef("Secret", "default", name)).read_text()
    )
    return loaded


async def test_certificate_is_issued_over_http01_and_served_by_sni(
    pebble: pebble_support.Pebble, acme: tuple[AcmeManager, FolderSink, Clock, Gate]
) -> None:
    manager, sink, _, gate = acme
    host = "app.acme.test"
    objects = [ingress(host, "app-tls")]
    manager.update(Snapshot.of(objects), table_for({host: "app-tls"}))
    secret_path = sink.path_for(ObjectRef("Secret", "default", "app-tls"))
    await wait_until_async(_exists(secret_path), what="the issued certificate")

    assert gate.requests >= 1  # Pebble's validator really fetched the challenge from us.
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert (sink.folder / ACCOUNT_KEY_FILE).exists()
    assert manager.problems() == []

    store = CertificateStore()
    snapshot = Snapshot.of([*objects, _secret(sink, "app-tls")])
    assert store.update(snapshot, table_for({host: "app-tls"})) == []
    with TinyTLSServer(store.listening_context) as server:
        # Verified against Pebble's root: a real chain from the CA, served for this name.
        seen = await asyncio.to_thread(handshake, server.port, host, pebble.root_pem())
    assert seen.names == {host}


async def test_renewal_when_a_third_of_the_lifetime_remains(
    acme: tuple[AcmeManager, FolderSink, Clock, Gate],
) -> None:
    manager, sink, clock, _ = acme
    host = "renew.acme.test"
    objects = [ingress(host, "renew-tls")]
    table = table_for({host: "renew-tls"})
    manager.update(Snapshot.of(objects), table)
    await wait_until_async(_issued(manager, 1), what="the first certificate")
    first = _secret(sink, "renew-tls")
    snapshot = Snapshot.of([*objects, first])
    manager.update(snapshot, table)

    # Pebble issues 5-year certificates: halfway through, nothing is due yet.
    clock.now += datetime.timedelta(days=365 * 2.5)
    manager.update(snapshot, table)
    await wait_until_async(_checked(manager), what="a renewal check")
    assert manager.in_flight == set()
    assert manager.issued == 1

    clock.now += datetime.timedelta(days=365)  # 3.5 years in: under a third remains
    manager.update(snapshot, table)
    await wait_until_async(_issued(manager, 2), what="the renewed certificate")
    assert _secret(sink, "renew-tls")["data"]["tls.crt"] != first["data"]["tls.crt"]


async def test_failed_challenge_is_reported_with_the_ca_error_and_retried(
    acme: tuple[AcmeManager, FolderSink, Clock, Gate],
) -> None:
    manager, sink, _, gate = acme
    gate.open = False
    host = "fail.acme.test"
    manager.update(Snapshot.of([ingress(host, "fail-tls")]), table_for({host: "fail-tls"}))

    def failed() -> Any:
        async def check() -> list[Any]:
            return [p for p in manager.problems() if p.reason == "AcmeFailed"]

        return check

    problems = await wait_until_async(failed(), what="the failure to be reported")
    message = problems[0].message  # type: ignore[index]
    print(message)
    assert "fail.acme.test" in message
    assert "404" in message, message  # Pebble's own words about what it fetched
    assert manager.issued == 0

    gate.open = True
    await wait_until_async(_issued(manager, 1), what="the retried order")
    assert [p for p in manager.problems() if p.reason == "AcmeFailed"] == []
    assert sink.path_for(ObjectRef("Secret", "default", "fail-tls")).exists()


def _exists(path: Path) -> Any:
    async def check() -> bool:
        return path.exists()

    return check


def _issued(manager: AcmeManager, count: int) -> Any:
    async def check() -> bool:
        return manager.issued >= count

    return check


def _checked(manager: AcmeManager) -> Any:
    async def check() -> bool:
        return manager.idle

    return check

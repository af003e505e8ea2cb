"""HTTP-01 tokens shared between replicas: the responder answering from the challenge Secret
of a snapshot (over the real proxy), and the leader's publisher writing that Secret through the
API double while a Kubernetes source that keeps it feeds the responder."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyingress.model import Snapshot
from pyingress.proxy import ProxyServer
from pyingress.routing.table import RouteTable, TableHolder
from pyingress.sources.kube import KubeSource
from pyingress.sources.kubeclient import KubeApi
from pyingress.sources.store import ObjectStore
from pyingress.tls.acme.challenges import CHALLENGE_SECRET, SharedChallenges, challenge_secret
from pyingress.tls.acme.responder import CHALLENGE_PREFIX, ChallengeResponder
from tests.kube.conftest import kube_api  # noqa: F401
from tests.support.apiserver_fixtures import fake_apiserver  # noqa: F401
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import wait_until_async

pytestmark = pytest.mark.timeout(60)

JSON = dict[str, Any]
SHARED = challenge_secret("default")
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTHORIZATION = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
SECRETS = "/api/v1/namespaces/default/secrets"


def challenge_secret_object(data: dict[str, str], name: str = CHALLENGE_SECRET) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": "default"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@pytest.fixture
async def port80() -> AsyncIterator[tuple[int, ChallengeResponder]]:
    """The proxy's plain-HTTP listener with a responder following the challenge Secret."""
    responder = ChallengeResponder(SHARED)
    server = ProxyServer(TableHolder(RouteTable()))
    server.mount(CHALLENGE_PREFIX, responder)
    listening = await server.listen("127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1], responder
    finally:
        await server.close(grace=1.0)


async def fetch(port: int, token: str) -> tuple[int, bytes]:
    def get() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"GET {CHALLENGE_PREFIX}{token} HTTP/1.1\r\nHost: acme.example.test\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    raw = await asyncio.to_thread(get)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_a_token_that_arrives_while_the_ca_asks_is_still_answered(
    port80: tuple[int, ChallengeResponder],
) -> None:
    """This replica's watch may lag the leader's: the responder waits a moment for the token."""
    port, responder = port80
    responder.update(Snapshot.of([challenge_secret_object({})]))
    asking = asyncio.create_task(fetch(port, TOKEN))

    async def waiting() -> bool:
        return responder.waiting == 1

    await wait_until_async(waiting, what="the request to wait for its token")
    assert not asking.done()
    responder.update(Snapshot.of([challenge_secret_object({TOKEN: KEY_AUTHORIZATION})]))
    status, body = await asking
    assert (status, body) == (200, KEY_AUTHORIZATION.encode())


async def test_responder_answers_from_the_snapshot_secret_and_refuses_unknown_tokens(
    port80: tuple[int, ChallengeResponder],
) -> None:
    port, responder = port80
    assert await fetch(port, TOKEN) == (404, b"no such ACME challenge\n")

    elsewhere = challenge_secret_object({"other-token": "other-token.thumb"}, name="unrelated")
    stray = challenge_secret_object({TOKEN: KEY_AUTHORIZATION, "mismatch": "another.thumb"})
    responder.update(Snapshot.of([stray, elsewhere]))
    assert await fetch(port, TOKEN) == (200, KEY_AUTHORIZATION.encode())
    # Unknown tokens, tokens only in some other Secret, and a value that is not a key
    # authorization for its token are all refused.
    assert (await fetch(port, "unknown-token"))[0] == 404
    assert (await fetch(port, "other-token"))[0] == 404
    assert (await fetch(port, "mismatch"))[0] == 404

    responder.update(Snapshot())  # the leader removed the Secret
    assert (await fetch(port, TOKEN))[0] == 404


def test_a_responder_without_a_shared_secret_ignores_it() -> None:
    local = ChallengeResponder()
    local.update(Snapshot.of([challenge_secret_object({TOKEN: KEY_AUTHORIZATION})]))
    assert local.answer(TOKEN) is None
    local.add(TOKEN, KEY_AUTHORIZATION)
    assert local.answer(TOKEN) == KEY_AUTHORIZATION


@pytest.fixture
async def replica(
    kube_api: KubeApi,  # noqa: F811
) -> AsyncIterator[tuple[ChallengeResponder, ObjectStore]]:
    """A Kubernetes source that keeps the challenge Secret (no Ingress names it), feeding
    a responder the way the TLS service does on every change."""
    store = ObjectStore()
    responder = ChallengeResponder(SHARED)
    store.subscribe(lambda *_: responder.update(store.snapshot()))
    source = KubeSource(kube_api, store, extra_secrets=[SHARED])
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 30)
        yield responder, store
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def secret_data(server: FakeApiServer) -> dict[str, str] | None:
    for obj in server.objects("v1", "Secret", "default"):
        if obj["metadata"]["name"] == CHALLENGE_SECRET:
            return dict(obj.get("data") or {})
    return None


async def test_the_leader_publishes_tokens_that_another_replica_answers(
    fake_apiserver: FakeApiServer,  # noqa: F811
    kube_api: KubeApi,  # noqa: F811
    replica: tuple[ChallengeResponder, ObjectStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    follower, _ = replica
    leader_responder = ChallengeResponder(SHARED)
    leader_store = ObjectStore()
    leader_store.subscribe(lambda *_: leader_responder.update(leader_store.snapshot()))
    leader_source = KubeSource(kube_api, leader_store, extra_secrets=[SHARED])
    leader_task = asyncio.create_task(leader_source.run())
    caplog.set_level(logging.DEBUG)
    try:
        # A previous leader left a token behind: preparing removes it.
        fake_apiserver.seed(challenge_secret_object({"stale-token": "stale-token.thumb"}))
        publisher = SharedChallenges(kube_api, leader_responder)
        await publisher.prepare()
        assert secret_data(fake_apiserver) == {}

        await publisher.publish(TOKEN, KEY_AUTHORIZATION)
        # publish() returned once the leader's own watch saw it; the follower's sees it too.
        assert leader_responder.answer(TOKEN) == KEY_AUTHORIZATION
        assert secret_data(fake_apiserver) == {
            TOKEN: base64.b64encode(KEY_AUTHORIZATION.encode()).decode()
        }

        async def follower_answers() -> bool:
            return follower.answer(TOKEN) == KEY_AUTHORIZATION

        await wait_until_async(follower_answers, what="the follower to answer the token")

        await publisher.withdraw(TOKEN)
        assert secret_data(fake_apiserver) == {}

        async def follower_forgot() -> bool:
            return follower.answer(TOKEN) is None

        await wait_until_async(follower_forgot, what="the follower to drop the token")
        assert leader_responder.pending() == set()
    finally:
        leader_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader_task
    assert KEY_AUTHORIZATION not in caplog.text


async def test_publishing_creates_the_secret_when_it_is_missing(
    fake_apiserver: FakeApiServer,  # noqa: F811
    kube_api: KubeApi,  # noqa: F811
    replica: tuple[ChallengeResponder, ObjectStore],
) -> None:
    follower, _ = replica
    publisher = SharedChallenges(kube_api, ChallengeResponder(SHARED), propagation_timeout=0.1)
    await publisher.publish(TOKEN, KEY_AUTHORIZATION)  # no prepare(): the Secret is created
    assert set(secret_data(fake_apiserver) or {}) == {TOKEN}

    async def follower_answers() -> bool:
        return follower.answer(TOKEN) == KEY_AUTHORIZATION

    await wait_until_async(follower_answers, what="the follower to answer the token")

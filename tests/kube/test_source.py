"""The Kubernetes source against the API double, in-process: list, watch, resume, re-list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyingress.model import ObjectRef
from pyingress.sources.kube import KubeSource, referenced_secrets
from pyingress.sources.kubeclient import KubeApi
from pyingress.sources.store import ObjectStore
from tests.kube.conftest import JSON, endpoint_slice, ingress, ingress_class, secret, service
from tests.support.fake_apiserver import FakeApiServer
from tests.support.fake_apiserver.resources import by_kind
from tests.support.net import wait_until_async

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def running(
    fake_apiserver: FakeApiServer, kube_api: KubeApi
) -> AsyncIterator[tuple[KubeSource, ObjectStore]]:
    store = ObjectStore()
    source = KubeSource(kube_api, store)
    task = asyncio.create_task(source.run())
    try:
        yield source, store
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def ref(kind: str, name: str, namespace: str = "default") -> ObjectRef:
    return ObjectRef(kind, "" if kind == "IngressClass" else namespace, name)


async def until(condition: object, what: str) -> None:
    async def check() -> bool:
        return bool(condition())  # type: ignore[operator]

    await wait_until_async(check, what=what)


async def create(api: KubeApi, obj: JSON) -> JSON:
    from pyingress.sources.kube import WATCHED_KINDS

    info = next(i for i in WATCHED_KINDS if i.kind == obj["kind"])
    namespace = obj["metadata"].get("namespace")
    return await api.request("POST", info.collection_path(namespace), body=obj)


async def test_lists_every_kind_with_kind_set_then_syncs(
    fake_apiserver: FakeApiServer, kube_api: KubeApi
) -> None:
    fake_apiserver.seed(
        ingress_class(), service("web"), endpoint_slice("web", 9000),
        ingress("site", "a.example", "web", tls_secret="site-tls"),
        secret("site-tls", data={"tls.crt": "c", "tls.key": "k"}), secret("unrelated"),
    )
    store = ObjectStore()
    source = KubeSource(kube_api, store)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 30)
        assert store.refs() == {
            ref("IngressClass", "pyingress"), ref("Service", "web"),
            ref("EndpointSlice", "web-slice"), ref("Ingress", "site"), ref("Secret", "site-tls"),
        }  # fmt: skip
        obj = store.get(ref("EndpointSlice", "web-slice"))
        assert obj is not None
        assert obj["kind"] == "EndpointSlice" and obj["apiVersion"] == "discovery.k8s.io/v1"
        assert obj["endpoints"][0]["addresses"] == ["127.0.0.1"]  # camelCase JSON, as served
        assert obj["metadata"]["resourceVersion"]
    finally:
        task.cancel()


async def test_watch_applies_adds_changes_and_deletes(
    running: tuple[KubeSource, ObjectStore], kube_api: KubeApi
) -> None:
    source, store = running
    await asyncio.wait_for(source.synced.wait(), 30)
    await create(kube_api, service("api"))
    await until(lambda: store.get(ref("Service", "api")), "the new Service")
    await create(kube_api, endpoint_slice("api", 9001))
    path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/api-slice"
    await kube_api.request(
        "PATCH", path, body={"ports": [{"name": "http", "port": 9002, "protocol": "TCP"}]},
        content_type="application/merge-patch+json",
    )  # fmt: skip

    def port() -> int:
        obj = store.get(ref("EndpointSlice", "api-slice"))
        return int(obj["ports"][0]["port"]) if obj else 0

    await until(lambda: port() == 9002, "the changed EndpointSlice port")
    await kube_api.request("DELETE", "/api/v1/namespaces/default/services/api")
    await until(lambda: store.get(ref("Service", "api")) is None, "the Service deletion")


async def test_survives_dropped_watches_and_compaction(
    running: tuple[KubeSource, ObjectStore], fake_apiserver: FakeApiServer, kube_api: KubeApi
) -> None:
    source, store = running
    await asyncio.wait_for(source.synced.wait(), 30)
    fake_apiserver.drop_watches(abort=True)
    await create(kube_api, service("after-abort"))
    await until(lambda: store.get(ref("Service", "after-abort")), "a change after a cut watch")

    # Make changes while no watch is open, compact the history, then let watches resume:
    # they must get a 410 and re-list, which also deletes what vanished meanwhile.
    fake_apiserver.outage("refuse")
    fake_apiserver.drop_watches(abort=True)
    fake_apiserver.seed(service("during-outage"))
    services = by_kind("v1", "Service")
    assert services is not None
    registry = fake_apiserver.app.registry
    fake_apiserver.call(registry.delete, services, "default", "after-abort", None)
    fake_apiserver.compact()
    assert store.get(ref("Service", "after-abort")) is not None  # the last state is kept
    fake_apiserver.outage("off")
    await until(lambda: store.get(ref("Service", "during-outage")), "the re-list after 410")
    await until(lambda: store.get(ref("Service", "after-abort")) is None, "vanished objects gone")


async def test_only_referenced_secrets_are_kept(
    running: tuple[KubeSource, ObjectStore], kube_api: KubeApi
) -> None:
    source, store = running
    await asyncio.wait_for(source.synced.wait(), 30)
    await create(kube_api, secret("later-tls", data={"tls.crt": "c"}))
    await create(kube_api, secret("auth", data={"auth": "u:h"}))
    await create(kube_api, ingress_class())
    await until(lambda: store.get(ref("IngressClass", "pyingress")), "the class")
    assert store.refs("Secret") == set()
    await create(kube_api, ingress(
        "site", "a.example", "web", tls_secret="later-tls",
        annotations={"nginx.ingress.kubernetes.io/auth-secret": "default/auth"},
    ))  # fmt: skip
    await until(
        lambda: store.refs("Secret") == {ref("Secret", "later-tls"), ref("Secret", "auth")},
        "referenced Secrets to be fetched",
    )
    await kube_api.request("DELETE", "/apis/networking.k8s.io/v1/namespaces/default/ingresses/site")
    await until(lambda: not store.refs("Secret"), "unreferenced Secrets to be dropped")


def test_referenced_secrets_reads_tls_and_auth_annotations() -> None:
    refs = referenced_secrets([
        ingress("a", "a.example", "s", namespace="team", tls_secret="cert",
                annotations={"pyingress.io/auth-secret": "users",
                             "nginx.ingress.kubernetes.io/auth-tls-secret": "other/ca",
                             "pyingress.io/auth-type": "basic"}),
    ])  # fmt: skip
    assert refs == {
        ObjectRef("Secret", "team", "cert"),
        ObjectRef("Secret", "team", "users"),
        ObjectRef("Secret", "other", "ca"),
    }


async def test_throttling_and_errors_are_retried_until_synced(
    fake_apiserver: FakeApiServer, kube_api: KubeApi
) -> None:
    fake_apiserver.seed(service("web"))
    fake_apiserver.inject(429, count=2, path_prefix="/api/v1/services", retry_after=1)
    fake_apiserver.inject(500, count=2, path_prefix="/apis/networking.k8s.io/v1/ingresses")
    store = ObjectStore()
    source = KubeSource(kube_api, store)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 30)
        assert store.get(ref("Service", "web")) is not None
        lists = [r for r in fake_apiserver.requests()
                 if r["path"] == "/api/v1/services" and "watch" not in r["query"]]  # fmt: skip
        assert len(lists) == 3  # two throttled, then served
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_namespace_limits_what_is_watched(
    fake_apiserver: FakeApiServer, kube_api: KubeApi
) -> None:
    fake_apiserver.seed(ingress_class(), service("mine", namespace="team"), service("theirs"))
    store = ObjectStore()
    source = KubeSource(kube_api, store, namespace="team")
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 30)
        assert store.refs() == {ref("IngressClass", "pyingress"), ref("Service", "mine", "team")}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

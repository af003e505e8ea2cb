"""The Service reflector keeps up across dropped watches and 410 Expired (re-list)."""

from __future__ import annotations

import asyncio
import contextlib

from kubernetes_asyncio import client

from pyingress.announce.reflector import Reflector
from pyingress.sources.kubeclient import KubeApi
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import wait_until_async


def service(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }  # fmt: skip


async def test_relists_after_expiry(
    api_client: client.ApiClient, fake_apiserver: FakeApiServer
) -> None:
    api = KubeApi(api_client)
    changes: list[int] = []
    reflector = Reflector(api, "/api/v1/services", "Service", lambda: changes.append(1))
    path = "/api/v1/namespaces/default/services"
    await api.request("POST", path, body=service("one"))
    task = asyncio.get_running_loop().create_task(reflector.run())

    async def names() -> set[str]:
        return {ref.name for ref in reflector.items}

    try:
        await wait_until_async(lambda: _eq(names(), {"one"}), what="the initial list")
        await api.request("POST", path, body=service("two"))
        await wait_until_async(lambda: _eq(names(), {"one", "two"}), what="a watch event")
        # While the reflector cannot reach the API, history moves on and is forgotten: its resume
        # then fails with 410 Expired and it must list again.
        fake_apiserver.outage("503")
        fake_apiserver.drop_watches()
        fake_apiserver.seed(service("three"))
        fake_apiserver.compact()
        fake_apiserver.outage("off")
        await wait_until_async(lambda: _eq(names(), {"one", "two", "three"}), what="a re-list")
        await api.request("DELETE", f"{path}/one")
        await wait_until_async(lambda: _eq(names(), {"two", "three"}), what="a re-list")
        lists = [r for r in fake_apiserver.requests()
                 if r["method"] == "GET" and r["path"] == "/api/v1/services"
                 and "watch" not in r["query"]]  # fmt: skip
        assert len(lists) == 2, "one initial list and one after the 410"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _eq(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]

"""Spec §8: the double's own test hooks, in-process and over HTTP from a separate process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import httpx
import pytest
from kubernetes_asyncio import client

from tests.contract.conftest import Target
from tests.contract.helpers import ingress
from tests.support.apiserver_fixtures import FakeApiServerProcess, configuration

pytestmark = pytest.mark.double_only


async def test_seeded_objects_are_served_as_given(api_target: Target, api: client.ApiClient,
                                                  ns: str) -> None:
    body = ingress("seeded")
    body["metadata"].update(namespace=ns, creationTimestamp="2020-05-05T05:05:05Z")
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.44"}]}}
    api_target.hooks.seed(body)
    got = await client.NetworkingV1Api(api).read_namespaced_ingress("seeded", ns)
    assert got.status.load_balancer.ingress[0].ip == "192.0.2.44"
    assert got.metadata.creation_timestamp.year == 2020 and got.metadata.generation == 1


async def test_injected_errors_hit_the_next_requests_only(api_target: Target,
                                                          api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    api_target.hooks.inject(429, count=1, path_prefix="/apis/networking.k8s.io", retry_after=7)
    api_target.hooks.inject(500, count=2, path_prefix="/apis/networking.k8s.io")
    await client.CoreV1Api(api).list_namespaced_service(ns)  # other prefix: untouched
    async with api_target.raw() as raw:
        throttled = await raw.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["reason"] == "TooManyRequests"
    for _ in range(2):
        with pytest.raises(client.ApiException) as caught:
            await net.list_namespaced_ingress(ns)
        assert caught.value.status == 500
    assert (await net.list_namespaced_ingress(ns)).items == []


async def test_outage_503_then_refused_then_back(api_target: Target, api: client.ApiClient,
                                                 ns: str) -> None:
    core = client.CoreV1Api(api)
    api_target.hooks.outage("503")
    with pytest.raises(client.ApiException) as caught:
        await core.list_namespaced_service(ns)
    assert caught.value.status == 503
    api_target.hooks.outage("refuse")
    with pytest.raises(aiohttp.ClientConnectorError):
        async with client.ApiClient(api_target.configuration()) as fresh:
            await client.CoreV1Api(fresh).list_namespaced_service(ns)
    api_target.hooks.outage("off")
    async with client.ApiClient(api_target.configuration()) as fresh:
        assert (await client.CoreV1Api(fresh).list_namespaced_service(ns)).items == []


async def test_request_log_records_verbs_and_content_types(api_target: Target,
                                                           api: client.ApiClient, ns: str) -> None:
    api_target.hooks.requests(clear=True)
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("r"))
    await net.patch_namespaced_ingress("r", ns, {"metadata": {"labels": {"a": "b"}}})
    log = api_target.hooks.requests()
    assert [(r["method"], r["contentType"]) for r in log] == [
        ("POST", "application/json"), ("PATCH", "application/strategic-merge-patch+json")]


def test_subprocess_double_with_http_hooks(tmp_path: Path) -> None:
    server = FakeApiServerProcess(tmp_path)
    try:
        hooks = server.hooks
        seeded = hooks.seed({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "proc"}})
        assert seeded[0]["metadata"]["resourceVersion"] == "1"
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/api/v1/namespaces/proc").json()["status"]["phase"] == "Active"
            hooks.inject(500, path_prefix="/api/v1")
            assert http.get("/api/v1/namespaces").status_code == 500
            assert http.get("/api/v1/namespaces").status_code == 200
            hooks.outage("503")
            assert http.get("/api/v1/namespaces").status_code == 503
            hooks.outage("off")
            assert hooks.compact() == 1
            assert hooks.state()["compactedResourceVersion"] == "1"
            hooks.outage("refuse", duration=3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/api/v1/namespaces")

        async def back() -> list[str]:
            async with client.ApiClient(configuration(server.url)) as api:
                while True:
                    try:
                        found = await client.CoreV1Api(api).list_namespace()
                        return [n.metadata.name for n in found.items]
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)

        assert asyncio.run(asyncio.wait_for(back(), 30)) == ["proc"]
    finally:
        server.stop()

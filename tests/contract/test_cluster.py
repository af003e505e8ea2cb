"""Discovery (§1), Events, kubeconfig loading and the library's LeaderElection on Leases (§6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from tests.contract.conftest import Target
from tests.contract.helpers import unique
from tests.support.apiserver_fixtures import write_kubeconfig


async def test_version_with_and_without_trailing_slash(api_target: Target,
                                                       api: client.ApiClient) -> None:
    info = await client.VersionApi(api).get_code()  # requests /version/
    assert info.major == "1" and info.git_version.startswith("v1.")
    async with api_target.raw() as raw:
        assert (await raw.get("/version")).json()["gitVersion"] == info.git_version


async def test_discovery_documents(api_target: Target) -> None:
    async with api_target.raw() as raw:
        core = (await raw.get("/api")).json()
        groups = (await raw.get("/apis")).json()
        networking = (await raw.get("/apis/networking.k8s.io/v1")).json()
        core_v1 = (await raw.get("/api/v1")).json()
        group = (await raw.get("/apis/coordination.k8s.io")).json()
    assert core["kind"] == "APIVersions" and "v1" in core["versions"]
    names = {g["name"] for g in groups["groups"]}
    assert {"networking.k8s.io", "coordination.k8s.io", "discovery.k8s.io"} <= names
    by_name = {r["name"]: r for r in networking["resources"]}
    assert by_name["ingresses"]["namespaced"] is True and by_name["ingresses"]["kind"] == "Ingress"
    assert "watch" in by_name["ingresses"]["verbs"] and "ingresses/status" in by_name
    assert by_name["ingressclasses"]["namespaced"] is False
    core_names = {r["name"] for r in core_v1["resources"]}
    assert {"services", "services/status", "secrets", "namespaces", "events"} <= core_names
    assert group["preferredVersion"]["groupVersion"] == "coordination.k8s.io/v1"


async def test_core_and_events_api_events(api: client.ApiClient, ns: str) -> None:
    core, events = client.CoreV1Api(api), client.EventsV1Api(api)
    involved = {"kind": "Ingress", "name": "web", "namespace": ns,
                "apiVersion": "networking.k8s.io/v1"}
    await core.create_namespaced_event(ns, {
        "metadata": {"name": "web.1"}, "involvedObject": involved, "reason": "Sync",
        "message": "synced", "type": "Normal", "source": {"component": "pyingress"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1})
    listed = await core.list_namespaced_event(ns, field_selector="involvedObject.name=web")
    assert [(e.metadata.name, e.reason) for e in listed.items] == [("web.1", "Sync")]
    await events.create_namespaced_event(ns, {
        "metadata": {"name": "web.2"}, "regarding": involved, "reason": "Sync",
        "note": "synced again", "type": "Normal", "action": "Reconcile",
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "pyingress.io/x",
        "reportingInstance": "pyingress-0"})
    got = await events.read_namespaced_event("web.2", ns)
    assert got.note == "synced again" and got.regarding.name == "web"
    patched = await core.patch_namespaced_event("web.1", ns, {"count": 2})
    assert patched.count == 2


@pytest.mark.double_only
async def test_kubeconfig_loads_and_works(api_target: Target, tmp_path: Path, ns: str) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", api_target.url)
    loaded = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=loaded)
    assert loaded.host == api_target.url
    async with client.ApiClient(loaded) as api:
        names = [n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items]
    assert ns in names
    assert any(r["path"] == "/api/v1/namespaces" for r in api_target.hooks.requests())


async def test_leader_election_acquires_a_lease(api: client.ApiClient, ns: str) -> None:
    name = unique("leader")
    led = asyncio.Event()

    async def started() -> None:
        led.set()

    async def stopped() -> None:
        pass

    lock = LeaseLock(name, ns, "candidate-a", api)
    election = leaderelection.LeaderElection(electionconfig.Config(
        lock, lease_duration=15, renew_deadline=10, retry_period=2,
        onstarted_leading=started, onstopped_leading=stopped))
    task = asyncio.create_task(election.run())
    try:
        await asyncio.wait_for(led.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = await client.CoordinationV1Api(api).read_namespaced_lease(name, ns)
    assert stored.spec.holder_identity == "candidate-a"
    # A second candidate sees the lease held and does not take it.
    other = LeaseLock(name, ns, "candidate-b", api)
    found, record = await other.get(name, ns)
    assert found and record.holder_identity == "candidate-a"

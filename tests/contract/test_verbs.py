"""Spec §4 (verbs), §6 (Lease compare-and-swap) and §7 (per-type details)."""

from __future__ import annotations

import base64

import pytest
from kubernetes_asyncio import client, watch

from tests.contract.conftest import Target
from tests.contract.helpers import expect_api_error, ingress, lease, rv, service, unique

LB_STATUS = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}


async def test_create_get_list_sorted_and_selected(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    for name, tier in (("c", "web"), ("a", "web"), ("b", "db")):
        await net.create_namespaced_ingress(ns, ingress(name, labels={"tier": tier}))
    fetched = await net.read_namespaced_ingress("a", ns)
    assert fetched.spec.rules[0].host == "a.example.com"

    async def names(**query: str) -> list[str]:
        listed = await net.list_namespaced_ingress(ns, **query)
        return [i.metadata.name for i in listed.items]

    assert await names() == ["a", "b", "c"]
    assert await names(label_selector="tier=web") == ["a", "c"]
    assert await names(label_selector="tier==db") == ["b"]
    assert await names(label_selector="tier!=web") == ["b"]
    assert await names(label_selector="tier in (db, web)") == ["a", "b", "c"]
    assert await names(label_selector="tier notin (web)") == ["b"]
    assert await names(label_selector="tier") == ["a", "b", "c"]
    assert await names(label_selector="!tier") == []
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="metadata.name!=b") == ["a", "c"]
    assert await names(field_selector=f"metadata.namespace={ns}") == ["a", "b", "c"]
    everywhere = await net.list_ingress_for_all_namespaces(
        field_selector=f"metadata.namespace={ns}")
    assert [i.metadata.name for i in everywhere.items] == ["a", "b", "c"]


async def test_create_drops_status_for_status_subresource_types(
    api: client.ApiClient, ns: str
) -> None:
    body = ingress("st")
    body.update(LB_STATUS)
    created = await client.NetworkingV1Api(api).create_namespaced_ingress(ns, body)
    assert created.status.load_balancer.ingress is None
    svc_body = service("st")
    svc_body.update(LB_STATUS)
    svc = await client.CoreV1Api(api).create_namespaced_service(ns, svc_body)
    assert svc.status.load_balancer.ingress is None
    assert svc.spec.cluster_ip


async def test_update_keeps_status_and_checks_the_rv(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("u"))
    with_status = await net.patch_namespaced_ingress_status("u", ns, LB_STATUS)
    body = ingress("u", labels={"v": "2"})
    body["metadata"]["resourceVersion"] = with_status.metadata.resource_version
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}
    updated = await net.replace_namespaced_ingress("u", ns, body)
    assert updated.metadata.labels == {"v": "2"}
    assert updated.status.load_balancer.ingress[0].ip == "192.0.2.10"  # status ignored
    assert rv(updated) > rv(with_status)
    # The same stale RV again is a conflict; no RV at all is an unconditional update.
    error = await expect_api_error(net.replace_namespaced_ingress("u", ns, body), 409)
    assert error["reason"] == "Conflict"
    assert "the object has been modified" in error["message"]
    del body["metadata"]["resourceVersion"]
    body["metadata"]["labels"] = {"v": "3"}
    assert (await net.replace_namespaced_ingress("u", ns, body)).metadata.labels == {"v": "3"}


async def test_status_writes_are_isolated_from_spec(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("iso"))
    current = await net.read_namespaced_ingress("iso", ns)
    body = client.ApiClient().sanitize_for_serialization(current)
    body["spec"]["rules"][0]["host"] = "changed.example.com"
    body["status"] = LB_STATUS["status"]
    written = await net.replace_namespaced_ingress_status("iso", ns, body)
    assert written.spec.rules[0].host == "a.example.com"  # spec ignored on /status
    assert written.status.load_balancer.ingress[0].ip == "192.0.2.10"
    patched = await net.patch_namespaced_ingress_status(
        "iso", ns, {"spec": {"rules": [{"host": "x.example.com"}]}})
    assert patched.spec.rules[0].host == "a.example.com"
    main = await net.patch_namespaced_ingress(
        "iso", ns, {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}})
    assert main.status.load_balancer.ingress[0].ip == "192.0.2.10"  # status ignored on main


async def test_patch_types(api_target: Target, api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("p", labels={"keep": "1"},
                                                    finalizers=["a.example/one"]))
    # kubernetes_asyncio sends dict bodies as strategic merge patch: finalizers are merged.
    smp = await net.patch_namespaced_ingress(
        "p", ns, {"metadata": {"finalizers": ["b.example/two"], "labels": {"new": "2"}}})
    assert smp.metadata.finalizers == ["b.example/two", "a.example/one"]
    assert smp.metadata.labels == {"keep": "1", "new": "2"}
    # A list body is a JSON patch, with working `test`.
    jp = await net.patch_namespaced_ingress("p", ns, [
        {"op": "test", "path": "/metadata/labels/keep", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/keep"},
        {"op": "replace", "path": "/spec/rules/0/host", "value": "jp.example.com"},
    ])
    assert jp.metadata.labels == {"new": "2"} and jp.spec.rules[0].host == "jp.example.com"
    error = await expect_api_error(net.patch_namespaced_ingress("p", ns, [
        {"op": "test", "path": "/metadata/labels/new", "value": "wrong"}]), 422)
    assert error["reason"] == "Invalid"
    # A merge patch replaces lists whole.
    async with api_target.raw() as raw:
        response = await raw.patch(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/p",
            json={"metadata": {"finalizers": ["c.example/three"], "labels": {"new": None}}},
            headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text
    merged = response.json()["metadata"]
    assert merged["finalizers"] == ["c.example/three"] and not merged.get("labels")
    await net.patch_namespaced_ingress("p", ns, [
        {"op": "remove", "path": "/metadata/finalizers"}])


async def test_patch_of_a_missing_object_is_404(api: client.ApiClient, ns: str) -> None:
    await expect_api_error(client.NetworkingV1Api(api).patch_namespaced_ingress(
        "missing", ns, {"metadata": {"labels": {"a": "b"}}}), 404)


async def test_put_creates_only_for_types_that_allow_it(api: client.ApiClient, ns: str) -> None:
    error = await expect_api_error(
        client.NetworkingV1Api(api).replace_namespaced_ingress("absent", ns, ingress("absent")),
        404)
    assert error["reason"] == "NotFound"
    # Service's strategy would allow it, but v1.20's Service REST creates on PUT only when
    # forced, and a PUT never forces.
    error = await expect_api_error(
        client.CoreV1Api(api).replace_namespaced_service("fresh", ns, service("fresh")), 404)
    assert error["details"] == {"name": "fresh", "kind": "services"}
    made = await client.CoordinationV1Api(api).replace_namespaced_lease_with_http_info(
        "fresh", ns, lease("fresh"))
    assert made[1] == 201 and made[0].spec.holder_identity == "a"


async def test_delete_preconditions(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    created = await net.create_namespaced_ingress(ns, ingress("pre"))
    wrong_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="0000"))
    await expect_api_error(net.delete_namespaced_ingress("pre", ns, body=wrong_uid), 409)
    wrong_rv = client.V1DeleteOptions(preconditions=client.V1Preconditions(
        resource_version=str(rv(created) - 1)))
    await expect_api_error(net.delete_namespaced_ingress("pre", ns, body=wrong_rv), 409)
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(
        uid=created.metadata.uid, resource_version=created.metadata.resource_version))
    assert (await net.delete_namespaced_ingress("pre", ns, body=right)).status == "Success"


async def test_finalizers_hold_deletion_until_cleared(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    created = await net.create_namespaced_ingress(ns, ingress("fin",
                                                              finalizers=["pyingress.io/x"]))
    marked = await net.delete_namespaced_ingress("fin", ns)
    # With finalizers the answer is the object itself, now being deleted.
    assert marked.metadata is not None
    held = await net.read_namespaced_ingress("fin", ns)
    assert held.metadata.deletion_timestamp is not None
    await net.patch_namespaced_ingress("fin", ns, [
        {"op": "remove", "path": "/metadata/finalizers"}])
    await expect_api_error(net.read_namespaced_ingress("fin", ns), 404)
    stream = watch.Watch()
    seen = []
    async for event in stream.stream(net.list_namespaced_ingress, ns,
                                     resource_version=str(rv(created)), timeout_seconds=5):
        seen.append((event["type"], rv(event["raw_object"])))
        if event["type"] == "DELETED":
            break
    await stream.close()
    types = [t for t, _ in seen]
    assert types[0] == "MODIFIED" and types[-1] == "DELETED"
    assert [r for _, r in seen] == sorted(r for _, r in seen)
    assert seen[-1][1] > seen[-2][1]  # the DELETED object carries the deletion's RV


async def test_lease_compare_and_swap(api_target: Target, api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    first = await coord.create_namespaced_lease(ns, lease("cas"))
    ok = await coord.replace_namespaced_lease(
        "cas", ns, lease("cas", holder="b", rv=first.metadata.resource_version))
    assert ok.spec.holder_identity == "b" and rv(ok) > rv(first)
    stale = lease("cas", holder="c", rv=first.metadata.resource_version)
    error = await expect_api_error(coord.replace_namespaced_lease("cas", ns, stale), 409)
    assert error["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "cas": the object has been '
        "modified; please apply your changes to the latest version and try again")
    async with api_target.raw() as raw:
        response = await raw.patch(
            f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/cas",
            json={"metadata": {"resourceVersion": first.metadata.resource_version},
                  "spec": {"holderIdentity": "d"}},
            headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 409 and response.json()["reason"] == "Conflict"
        response = await raw.patch(
            f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/cas",
            json={"metadata": {"resourceVersion": ok.metadata.resource_version},
                  "spec": {"holderIdentity": "d"}},
            headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 200 and response.json()["spec"]["holderIdentity"] == "d"
    assert (await coord.read_namespaced_lease("cas", ns)).spec.holder_identity == "d"


async def test_lease_validation(api: client.ApiClient, ns: str) -> None:
    body = lease("bad")
    body["spec"]["leaseDurationSeconds"] = 0
    error = await expect_api_error(
        client.CoordinationV1Api(api).create_namespaced_lease(ns, body), 422)
    assert error["details"]["causes"][0]["field"] == "spec.leaseDurationSeconds"


async def test_lease_micro_time_round_trips(api: client.ApiClient, ns: str) -> None:
    created = await client.CoordinationV1Api(api).create_namespaced_lease(ns, lease("mt"))
    assert created.spec.renew_time.microsecond == 0
    assert created.spec.renew_time.year == 2026


async def test_service_allocates_cluster_ip_and_node_ports(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    svc = await core.create_namespaced_service(ns, service("lb", type="LoadBalancer"))
    assert svc.spec.cluster_ip and svc.spec.cluster_ip.count(".") == 3
    assert 30000 <= svc.spec.ports[0].node_port <= 32767
    assert svc.spec.ports[0].protocol == "TCP"
    # A status write goes through /status only.
    written = await core.patch_namespaced_service_status("lb", ns, LB_STATUS)
    assert written.status.load_balancer.ingress[0].ip == "192.0.2.10"
    replaced = await core.replace_namespaced_service("lb", ns, client.ApiClient()
                                                     .sanitize_for_serialization(written))
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip


async def test_secret_string_data_and_type(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    secret = await core.create_namespaced_secret(ns, {
        "metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert secret.data == {"k": base64.b64encode(b"v").decode()}
    assert secret.type == "Opaque"
    assert secret.string_data is None
    tls = {"metadata": {"name": "t"}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": base64.b64encode(b"c").decode()}}
    error = await expect_api_error(core.create_namespaced_secret(ns, tls), 422)
    assert any(c["field"] == "data[tls.key]" for c in error["details"]["causes"])


async def test_ingress_class_is_cluster_scoped_with_immutable_controller(
    api: client.ApiClient,
) -> None:
    net = client.NetworkingV1Api(api)
    name = unique("pyi-contract-class")
    created = await net.create_ingress_class({
        "metadata": {"name": name,
                     "annotations": {"ingressclass.kubernetes.io/is-default-class": "false"}},
        "spec": {"controller": "pyingress.io/ingress-controller"}})
    try:
        assert created.metadata.namespace is None
        error = await expect_api_error(net.patch_ingress_class(
            name, {"spec": {"controller": "other.io/x"}}), 422)
        assert error["reason"] == "Invalid"
        listed = await net.list_ingress_class(field_selector=f"metadata.name={name}")
        assert [c.metadata.name for c in listed.items] == [name]
    finally:
        await net.delete_ingress_class(name)


@pytest.mark.endpointslice_v1
async def test_endpoint_slices_link_to_their_service(api: client.ApiClient, ns: str) -> None:
    disc = client.DiscoveryV1Api(api)
    await disc.create_namespaced_endpoint_slice(ns, {
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": True},
                       "nodeName": "n1", "zone": "z1"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    await disc.create_namespaced_endpoint_slice(ns, {
        "metadata": {"name": "other-abc", "labels": {"kubernetes.io/service-name": "other"}},
        "addressType": "IPv4", "endpoints": [], "ports": []})
    listed = await disc.list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=web")
    assert [s.metadata.name for s in listed.items] == ["web-abc"]
    endpoint = listed.items[0].endpoints[0]
    assert endpoint.addresses == ["10.0.0.5"] and endpoint.conditions.ready is True
    assert endpoint.zone == "z1" and listed.items[0].ports[0].port == 8080

"""Spec §2 (storage, resourceVersion, server-set metadata) and §3 (errors)."""

from __future__ import annotations

from kubernetes_asyncio import client, watch

from tests.contract.conftest import Target
from tests.contract.helpers import (
    RFC3339_SECONDS,
    expect_api_error,
    ingress,
    lease,
    rv,
    service,
    unique,
)


async def test_every_write_takes_the_next_global_resource_version(
    api: client.ApiClient, ns: str
) -> None:
    net, core = client.NetworkingV1Api(api), client.CoreV1Api(api)
    created = await net.create_namespaced_ingress(ns, ingress("a"))
    other = await core.create_namespaced_service(ns, service("b"))
    patched = await net.patch_namespaced_ingress("a", ns, {"metadata": {"labels": {"x": "1"}}})
    status = await net.patch_namespaced_ingress_status(
        "a", ns, {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    )
    # One counter across types: each write is newer than the last, whatever its type.
    sequence = [rv(created), rv(other), rv(patched), rv(status)]
    assert sequence == sorted(sequence) and len(set(sequence)) == 4
    await net.delete_namespaced_ingress("a", ns)
    stream = watch.Watch()
    async for event in stream.stream(net.list_namespaced_ingress, ns,
                                     resource_version=str(rv(status)), timeout_seconds=5):
        assert event["type"] == "DELETED"
        assert rv(event["raw_object"]) > rv(status)  # the deletion took a revision too
        break
    else:
        raise AssertionError("no DELETED event")
    await stream.close()


async def test_list_resource_version_is_the_current_counter(api: client.ApiClient, ns: str) -> None:
    net, core = client.NetworkingV1Api(api), client.CoreV1Api(api)
    written = await core.create_namespaced_service(ns, service(unique("s")))
    empty = await net.list_namespaced_ingress(ns)
    assert empty.items == []
    assert int(empty.metadata.resource_version) >= rv(written)


async def test_no_op_writes_keep_the_rv_and_emit_no_event(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    created = await net.create_namespaced_ingress(ns, ingress("same"))
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
    first = await net.patch_namespaced_ingress_status("same", ns, status)
    again = await net.patch_namespaced_ingress_status("same", ns, status)
    assert rv(again) == rv(first)
    replaced = await net.replace_namespaced_ingress("same", ns, again)
    assert rv(replaced) == rv(first)
    relabel = await net.patch_namespaced_ingress("same", ns, {"metadata": {"labels": {}}})
    assert rv(relabel) == rv(first)
    # The next event after the status write must be the real change, not a no-op.
    await net.patch_namespaced_ingress("same", ns, {"metadata": {"labels": {"real": "change"}}})
    stream = watch.Watch()
    async for event in stream.stream(net.list_namespaced_ingress, ns,
                                     resource_version=str(rv(first)), timeout_seconds=5):
        assert event["type"] == "MODIFIED"
        assert event["raw_object"]["metadata"]["labels"] == {"real": "change"}
        break
    await stream.close()
    assert rv(created) < rv(first)


async def test_server_sets_uid_timestamp_rv_and_generation(api: client.ApiClient, ns: str) -> None:
    net, core = client.NetworkingV1Api(api), client.CoreV1Api(api)
    body = ingress("meta")
    body["metadata"].update(uid="not-mine", creationTimestamp="2000-01-01T00:00:00Z",
                            generation=7)
    async with api_raw(api) as raw:
        response = await raw.post(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
                                  json=body)
    created = response.json()
    meta = created["metadata"]
    assert response.status_code == 201
    assert meta["uid"] != "not-mine" and len(meta["uid"]) == 36
    assert RFC3339_SECONDS.match(meta["creationTimestamp"]) and not meta[
        "creationTimestamp"].startswith("2000")
    assert meta["generation"] == 1 and meta["resourceVersion"]
    assert created["kind"] == "Ingress" and created["apiVersion"] == "networking.k8s.io/v1"

    after_status = await net.patch_namespaced_ingress_status(
        "meta", ns, {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}})
    assert after_status.metadata.generation == 1
    after_label = await net.patch_namespaced_ingress("meta", ns,
                                                     {"metadata": {"labels": {"a": "b"}}})
    assert after_label.metadata.generation == 1
    after_spec = await net.patch_namespaced_ingress(
        "meta", ns, {"spec": {"rules": [{"host": "b.example.com"}]}})
    assert after_spec.metadata.generation == 2
    assert after_spec.metadata.uid == meta["uid"]

    svc = await core.create_namespaced_service(ns, service("nogen"))
    assert svc.metadata.generation is None


async def test_single_objects_carry_kind_and_lists_carry_list_kind(
    api_target: Target, api: client.ApiClient, ns: str
) -> None:
    await client.NetworkingV1Api(api).create_namespaced_ingress(ns, ingress("k"))
    async with api_target.raw() as raw:
        one = (await raw.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/k")).json()
        many = (await raw.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses")).json()
    assert (one["kind"], one["apiVersion"]) == ("Ingress", "networking.k8s.io/v1")
    assert (many["kind"], many["apiVersion"]) == ("IngressList", "networking.k8s.io/v1")
    assert many["metadata"]["resourceVersion"]
    assert [item["metadata"]["name"] for item in many["items"]] == ["k"]
    assert set(many["items"][0]) >= {"metadata", "spec", "status"}


async def test_namespace_in_body_must_match_the_url(api: client.ApiClient, ns: str) -> None:
    body = ingress("mismatch", namespace="elsewhere")
    error = await expect_api_error(
        client.NetworkingV1Api(api).create_namespaced_ingress(ns, body), 400)
    assert error["reason"] == "BadRequest"
    assert "does not match the namespace sent on the request" in error["message"]


async def test_not_found_is_a_status_with_details(api: client.ApiClient, ns: str) -> None:
    error = await expect_api_error(client.NetworkingV1Api(api).read_namespaced_ingress("nope", ns),
                                   404)
    assert error["reason"] == "NotFound"
    assert error["message"] == 'ingresses.networking.k8s.io "nope" not found'
    assert error["details"] == {"name": "nope", "group": "networking.k8s.io", "kind": "ingresses"}


async def test_create_of_an_existing_name_is_already_exists(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("twice"))
    error = await expect_api_error(net.create_namespaced_ingress(ns, ingress("twice")), 409)
    assert error["reason"] == "AlreadyExists"


async def test_create_with_a_resource_version_is_refused(api: client.ApiClient, ns: str) -> None:
    body = ingress("with-rv", resourceVersion="5")
    error = await expect_api_error(client.NetworkingV1Api(api).create_namespaced_ingress(ns, body),
                                   500)
    # A storage error, not a Status: v1.20 sends the bare message with no reason or details.
    assert error["message"] == "resourceVersion should not be set on objects to be created"
    assert "reason" not in error and "details" not in error


async def test_lease_put_without_rv_is_invalid(api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    await coord.create_namespaced_lease(ns, lease("l"))
    error = await expect_api_error(coord.replace_namespaced_lease("l", ns, lease("l")), 422)
    assert error["reason"] == "Invalid"
    assert error["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    assert "must be specified for an update" in error["message"]


async def test_unsupported_patch_type_is_415(api_target: Target, ns: str,
                                             api: client.ApiClient) -> None:
    await client.NetworkingV1Api(api).create_namespaced_ingress(ns, ingress("p"))
    async with api_target.raw() as raw:
        response = await raw.patch(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/p",
                                   content='{"metadata":{}}',
                                   headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["reason"] == "UnsupportedMediaType"


async def test_verb_not_supported_is_405(api_target: Target, ns: str) -> None:
    async with api_target.raw() as raw:
        response = await raw.post(f"/api/v1/namespaces/{ns}/services/x", json={})
    assert response.status_code == 405
    assert response.json()["reason"] == "MethodNotAllowed"


async def test_delete_answers_a_success_status(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    created = await net.create_namespaced_ingress(ns, ingress("gone"))
    status = await net.delete_namespaced_ingress("gone", ns)
    assert status.status == "Success"
    assert status.details.name == "gone" and status.details.kind == "ingresses"
    assert status.details.uid == created.metadata.uid
    await expect_api_error(net.read_namespaced_ingress("gone", ns), 404)


def api_raw(api: client.ApiClient) -> RawFromClient:
    return RawFromClient(api)


class RawFromClient:
    """Raw HTTP with the same base URL and token as a kubernetes_asyncio client."""

    def __init__(self, api: client.ApiClient) -> None:
        import httpx

        config = api.configuration
        token = config.api_key.get("BearerToken", "")
        self._client = httpx.AsyncClient(
            base_url=config.host, headers={"Authorization": f"Bearer {token}"},
            verify=config.ssl_ca_cert or False, timeout=30)

    async def __aenter__(self) -> httpx.AsyncClient:  # noqa: F821
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()


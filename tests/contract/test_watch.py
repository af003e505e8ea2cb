"""Spec §5 (watch): start points, history and 410, filtering, timeouts and bookmarks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch

from tests.contract.conftest import Target
from tests.contract.helpers import ingress, lease, rv

Event = dict[str, Any]


async def collect(stream: watch.Watch, func: Any, *args: Any, until: int,
                  **kwargs: Any) -> list[Event]:
    """The first ``until`` events of a watch (each with its type and raw object)."""
    events: list[Event] = []
    async for event in stream.stream(func, *args, **kwargs):
        events.append(event)
        if len(events) >= until:
            break
    await stream.close()
    return events


def summary(events: list[Event]) -> list[tuple[str, str]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name", "")) for e in events]


async def test_watch_without_rv_starts_with_synthetic_added(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("old"))
    for start in ({}, {"resource_version": "0"}):
        stream = watch.Watch()
        events: list[Event] = []
        async for event in stream.stream(net.list_namespaced_ingress, ns, timeout_seconds=10,
                                         **start):
            events.append(event)
            if len(events) == 1:
                await net.patch_namespaced_ingress(
                    "old", ns, {"metadata": {"labels": {"n": str(len(start))}}})
            else:
                break
        await stream.close()
        assert summary(events) == [("ADDED", "old"), ("MODIFIED", "old")]
        assert events[0]["raw_object"]["kind"] == "Ingress"
        assert events[1]["object"].metadata.labels == {"n": str(len(start))}


async def test_watch_from_rv_replays_only_newer_history(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    await net.create_namespaced_ingress(ns, ingress("before"))
    mark = await net.create_namespaced_ingress(ns, ingress("mark"))
    await net.create_namespaced_ingress(ns, ingress("after"))
    await net.delete_namespaced_ingress("before", ns)
    events = await collect(watch.Watch(), net.list_namespaced_ingress, ns, until=2,
                           resource_version=mark.metadata.resource_version, timeout_seconds=10)
    assert summary(events) == [("ADDED", "after"), ("DELETED", "before")]


async def test_watch_filters_and_converts_matching_changes(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    start = await net.create_namespaced_ingress(ns, ingress("x", labels={"pick": "no"}))
    await net.create_namespaced_ingress(ns, ingress("never", labels={"pick": "no"}))
    await net.patch_namespaced_ingress("x", ns, {"metadata": {"labels": {"pick": "yes"}}})
    await net.patch_namespaced_ingress("x", ns, {"metadata": {"labels": {"also": "1"}}})
    last = await net.patch_namespaced_ingress("x", ns, {"metadata": {"labels": {"pick": "no"}}})
    events = await collect(watch.Watch(), net.list_namespaced_ingress, ns, until=3,
                           resource_version=start.metadata.resource_version,
                           label_selector="pick=yes", timeout_seconds=10)
    assert summary(events) == [("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
    # The DELETED for "stopped matching" shows the last matching state at the new RV.
    assert events[2]["raw_object"]["metadata"]["labels"]["pick"] == "yes"
    assert rv(events[2]["raw_object"]) == rv(last)


async def test_watch_field_selector_on_one_name(api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    start = await coord.create_namespaced_lease(ns, lease("other"))
    await coord.create_namespaced_lease(ns, lease("mine"))
    events = await collect(watch.Watch(), coord.list_namespaced_lease, ns, until=1,
                           field_selector="metadata.name=mine", timeout_seconds=10,
                           resource_version=start.metadata.resource_version)
    assert summary(events) == [("ADDED", "mine")]


async def test_timeout_seconds_ends_the_stream(api: client.ApiClient, ns: str) -> None:
    net = client.NetworkingV1Api(api)
    stream = watch.Watch()
    events = [e async for e in stream.stream(net.list_namespaced_ingress, ns, timeout_seconds=1)]
    await stream.close()
    assert events == []


async def watch_then_write(target: Target, path: str, params: dict[str, str],
                           write: Callable[[], Awaitable[Any]], until: int
                           ) -> tuple[list[Event], Any]:
    """Open a raw watch, call ``write`` once its response headers arrived (the server has
    registered the watch by then, so the write reaches it live), and return the first
    ``until`` events (fewer if the stream ends) with what ``write`` returned."""
    events: list[Event] = []
    async with target.raw() as raw, raw.stream("GET", path,
                                               params={"watch": "1", **params}) as response:
        assert response.status_code == 200
        written = await write()
        async for line in response.aiter_lines():
            if line.strip():
                events.append(json.loads(line))
                if len(events) >= until:
                    break
    return events, written


async def test_no_bookmark_without_a_newer_change_of_the_type(api: client.ApiClient,
                                                              ns: str) -> None:
    net = client.NetworkingV1Api(api)
    seen = await net.create_namespaced_ingress(ns, ingress("seen"))
    # Replayed from history but filtered out: v1.20 sends a bookmark only with the RV of a change
    # of this type newer than where the watch began after its replay, so none comes here.
    await net.create_namespaced_ingress(ns, ingress("replayed"))
    quiet = await collect(watch.Watch(), net.list_namespaced_ingress, ns, until=1,
                          timeout_seconds=3, allow_watch_bookmarks=True,
                          field_selector="metadata.name=seen",
                          resource_version=seen.metadata.resource_version)
    assert quiet == []


async def test_bookmarks_carry_a_newer_rv(api_target: Target, api: client.ApiClient,
                                          ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    start = await coord.create_namespaced_lease(ns, lease("seen"))

    async def unseen_change() -> Any:
        # A change this watch does not see: the bookmark must still carry its RV.
        return await coord.create_namespaced_lease(ns, lease("unseen"))

    events, unseen = await watch_then_write(
        api_target, f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        {"allowWatchBookmarks": "true", "timeoutSeconds": "4",
         "fieldSelector": "metadata.name=seen", "resourceVersion": start.metadata.resource_version},
        unseen_change, until=1)
    # Clients may not rely on bookmarks, but the double and v1.20 send one 2 s before the deadline.
    assert [e["type"] for e in events] == ["BOOKMARK"], "no bookmark before the deadline"
    assert rv(events[0]["object"]) >= rv(unseen)
    assert events[0]["object"]["kind"] == "Lease"


@pytest.mark.double_only
async def test_bookmarks_at_the_configured_interval(api_target: Target, api: client.ApiClient,
                                                    ns: str) -> None:
    api_target.hooks.configure(bookmark_interval=0.2)
    coord = client.CoordinationV1Api(api)
    written = await coord.create_namespaced_lease(ns, lease("b"))

    async def unseen_change() -> Any:
        return await coord.create_namespaced_lease(ns, lease("c"))

    events, unseen = await watch_then_write(
        api_target, f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        {"allowWatchBookmarks": "true", "timeoutSeconds": "60",
         "fieldSelector": "metadata.name=b", "resourceVersion": written.metadata.resource_version},
        unseen_change, until=2)
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert rv(events[0]["object"]) >= rv(unseen)


@pytest.mark.double_only
async def test_bookmark_hook(api_target: Target, api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    written = await coord.create_namespaced_lease(ns, lease("b"))
    done = asyncio.Event()

    async def nudge() -> None:
        while not done.is_set():
            await asyncio.to_thread(api_target.hooks.bookmark)
            await asyncio.sleep(0.05)

    nudger = asyncio.create_task(nudge())
    try:
        events = await collect(watch.Watch(), coord.list_namespaced_lease, ns, until=1,
                               timeout_seconds=60, allow_watch_bookmarks=True,
                               resource_version=written.metadata.resource_version)
    finally:
        done.set()
        await nudger
    assert events[0]["type"] == "BOOKMARK"
    assert rv(events[0]["raw_object"]) >= rv(written)


@pytest.mark.double_only
async def test_expired_rv_is_410_in_stream_and_as_http(api_target: Target, api: client.ApiClient,
                                                       ns: str) -> None:
    net = client.NetworkingV1Api(api)
    old = await net.create_namespaced_ingress(ns, ingress("o"))
    await net.patch_namespaced_ingress("o", ns, {"metadata": {"labels": {"a": "b"}}})
    api_target.hooks.compact()
    for as_http in (False, True):
        api_target.hooks.configure(expired_as_http=as_http)
        # With timeout_seconds the client raises at once.
        stream = watch.Watch()
        with pytest.raises(client.ApiException) as caught:
            async for _ in stream.stream(net.list_namespaced_ingress, ns, timeout_seconds=5,
                                         resource_version=old.metadata.resource_version):
                pass
        await stream.close()
        assert caught.value.status == 410
        # Without it, the client retries the same stale RV once, then raises.
        stream = watch.Watch()
        with pytest.raises(client.ApiException) as caught:
            async for _ in stream.stream(net.list_namespaced_ingress, ns,
                                         resource_version=old.metadata.resource_version):
                pass
        await stream.close()
        assert caught.value.status == 410
    async with api_target.raw() as raw:
        api_target.hooks.configure(expired_as_http=False)
        response = await raw.get(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
            params={"watch": "1", "resourceVersion": old.metadata.resource_version})
    assert response.status_code == 200
    error = response.json()
    assert error["type"] == "ERROR" and error["object"]["code"] == 410
    assert error["object"]["reason"] == "Expired"
    assert error["object"]["message"].startswith(
        f"too old resource version: {old.metadata.resource_version} (")
    requests = api_target.hooks.requests()
    assert any("watch=True" in r["query"] for r in requests)


@pytest.fixture
async def first_ingress(api: client.ApiClient, ns: str) -> None:
    await client.NetworkingV1Api(api).create_namespaced_ingress(ns, ingress("first"))


@pytest.mark.double_only
async def test_dropped_watches_resume_from_the_last_rv(
    api_target: Target, api: client.ApiClient, ns: str, first_ingress: None
) -> None:
    net = client.NetworkingV1Api(api)
    stream = watch.Watch()
    seen: list[tuple[str, str]] = []
    async for event in stream.stream(net.list_namespaced_ingress, ns):
        seen.append((event["type"], event["raw_object"]["metadata"]["name"]))
        if len(seen) == 1:
            await asyncio.to_thread(api_target.hooks.drop_watches)
            await net.create_namespaced_ingress(ns, ingress("while-away"))
        if len(seen) == 2:
            break
    await stream.close()
    assert seen == [("ADDED", "first"), ("ADDED", "while-away")]


@pytest.mark.double_only
async def test_aborted_watch_raises_in_the_client(api_target: Target, api: client.ApiClient,
                                                  ns: str, first_ingress: None) -> None:
    net = client.NetworkingV1Api(api)
    stream = watch.Watch()
    with pytest.raises(aiohttp.ClientPayloadError):
        async for _ in stream.stream(net.list_namespaced_ingress, ns):
            await asyncio.to_thread(api_target.hooks.drop_watches, True)
    await stream.close()


@pytest.mark.double_only
async def test_list_with_a_future_rv_times_out_with_504(api_target: Target,
                                                        api: client.ApiClient, ns: str) -> None:
    api_target.hooks.configure(too_large_rv_wait=0.2)
    future = str(api_target.hooks.resource_version + 1000)
    with pytest.raises(client.ApiException) as caught:
        await client.NetworkingV1Api(api).list_namespaced_ingress(ns, resource_version=future)
    assert caught.value.status == 504


async def test_watch_from_a_future_rv_waits_for_it(api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    current = await coord.create_namespaced_lease(ns, lease("now"))
    future = rv(current) + 1

    async def write() -> None:
        # Whether these land before or after the watch opens, only RVs > future may show.
        await coord.create_namespaced_lease(ns, lease("second"))
        await coord.create_namespaced_lease(ns, lease("third"))

    writer = asyncio.create_task(write())
    stream = watch.Watch()
    seen: list[tuple[str, int]] = []
    async for event in stream.stream(coord.list_namespaced_lease, ns, timeout_seconds=20,
                                     resource_version=str(future)):
        seen.append((event["raw_object"]["metadata"]["name"], rv(event["raw_object"])))
        break
    else:
        raise AssertionError("stream ended without events")
    await stream.close()
    await writer
    assert seen[0][1] > future and seen[0][0] != "now"


"""Status diff logic (pure), the Event token bucket, back-off, and the Lease election in-process."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pyingress.model import ObjectRef, Problem
from pyingress.ratelimit import RateLimiter
from pyingress.routing.compiler import CompileOptions
from pyingress.sources.kubeclient import Backoff, KubeApi
from pyingress.status.events import EventRecorder
from pyingress.status.leader import LeaderElector
from pyingress.status.publisher import (
    address_entry,
    desired_entries,
    normalize_entries,
    status_updates,
)
from tests.kube.conftest import JSON, ingress, ingress_class
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import wait_until_async

OPTIONS = CompileOptions()


def with_status(obj: JSON, *ips: str) -> JSON:
    return {**obj, "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_desired_entries_from_addresses_or_service() -> None:
    assert desired_entries(["192.0.2.2", " 192.0.2.1", "lb.example.com"], None) == [
        {"hostname": "lb.example.com"}, {"ip": "192.0.2.1"}, {"ip": "192.0.2.2"},
    ]  # fmt: skip
    svc = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9", "ipMode": "VIP"}]}}}
    assert desired_entries([], svc) == [{"ip": "192.0.2.9"}]
    assert desired_entries([], {"spec": {"externalIPs": ["192.0.2.7"]}}) == [{"ip": "192.0.2.7"}]
    assert desired_entries([], None) == []
    assert address_entry("2001:db8::1") == {"ip": "2001:db8::1"}


def test_status_updates_only_for_owned_ingresses_that_differ() -> None:
    classes = [ingress_class(), ingress_class("other", "example.com/other")]
    desired = normalize_entries([{"ip": "192.0.2.1"}])
    ingresses = [
        ingress("stale", "a", "s"),
        with_status(ingress("current", "b", "s"), "192.0.2.1"),
        with_status(ingress("wrong", "c", "s"), "192.0.2.5"),
        ingress("other", "d", "s", class_name="other"),
        ingress("unknown", "e", "s", class_name="does-not-exist"),
        ingress("classless", "f", "s", class_name=None),
    ]
    names = [ref.name for ref in status_updates(ingresses, classes, OPTIONS, desired)]
    assert names == ["stale", "wrong"]
    # Order of entries does not count as a change.
    two = normalize_entries([{"ip": "192.0.2.2"}, {"ip": "192.0.2.1"}])
    assert status_updates([with_status(ingress("x", "a", "s"), "192.0.2.1", "192.0.2.2")],
                          classes, OPTIONS, two) == []  # fmt: skip


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait_time("k") == 0.0 for _ in range(4)] == [True, True, True, False]
    assert limiter.wait_time("k") == pytest.approx(0.5)  # a refused request counts for nothing
    assert limiter.wait_time("other") == 0.0  # keys have buckets of their own
    now[0] += 0.5
    assert limiter.wait_time("k") == 0.0 and limiter.wait_time("k") > 0.0
    now[0] += 10.0  # a long idle time refills to the burst, never beyond
    assert [limiter.wait_time("k") == 0.0 for _ in range(4)] == [True, True, True, False]


async def test_a_problem_that_comes_back_much_later_is_counted_on_its_event(
    kube_api: KubeApi, fake_apiserver: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyingress.status.events")
    site = {**ingress("site", "a.example", "web"), "metadata": {"name": "site",
            "namespace": "default", "uid": "site-uid"}}  # fmt: skip
    problem = Problem(ObjectRef("Ingress", "default", "site"), "ServiceNotFound", "no web")
    now = [1000.0]
    recorder = EventRecorder(kube_api, lambda ref: site, interval=1.0, clock=lambda: now[0])
    task = asyncio.create_task(recorder.run())

    async def events() -> list[JSON]:
        return fake_apiserver.objects("v1", "Event", "default")

    try:
        recorder.observe([problem])
        recorder.observe([problem])  # reported again while the first write may be in flight
        await wait_until_async(events, what="the Event")

        async def written() -> bool:  # the recorder has its answer, not only the server
            return any(r.getMessage().startswith("event posted") for r in caplog.records)

        await wait_until_async(written, what="the write to finish")
        recorder.observe([])  # solved...
        now[0] += 3600.0  # ...for an hour, far longer than any interval
        recorder.observe([problem])

        async def bumped() -> bool:
            return any(e["count"] > 1 for e in await events()) or len(await events()) > 1

        await wait_until_async(bumped, what="the recurrence to be recorded")
        (event,) = await events()
        assert event["count"] == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_event_the_api_server_could_not_take_is_written_later(
    kube_api: KubeApi, fake_apiserver: FakeApiServer
) -> None:
    site = {**ingress("site", "a.example", "web"), "metadata": {"name": "site",
            "namespace": "default", "uid": "site-uid"}}  # fmt: skip
    problem = Problem(ObjectRef("Ingress", "default", "site"), "ServiceNotFound", "no web")
    fake_apiserver.inject(503, count=1, path_prefix="/api/v1/namespaces/default/events")
    recorder = EventRecorder(kube_api, lambda ref: site)
    task = asyncio.create_task(recorder.run())
    try:
        recorder.observe([problem])

        async def posted() -> list[JSON]:
            return fake_apiserver.objects("v1", "Event", "default")

        await wait_until_async(posted, what="the Event after the 503")
        (event,) = await posted()
        assert event["reason"] == "ServiceNotFound" and event["count"] == 1
        posts = [r for r in fake_apiserver.requests() if r["path"].endswith("/events")]
        assert len(posts) == 2  # the refused one, then the one that was taken
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.2, cap=10.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(d <= 10.0 for d in delays) and delays[-1] >= 5.0
    assert backoff.next_delay(at_least=30) == 10.0  # Retry-After is honoured, within the cap
    backoff.reset()
    assert backoff.next_delay() <= 0.2


async def test_exactly_one_of_two_candidates_leads_and_release_hands_over(
    kube_api: KubeApi,
) -> None:
    def elector(identity: str) -> LeaderElector:
        return LeaderElector(kube_api, "default", "test-lease", identity,
                             lease_duration=2, renew_deadline=1.5, retry_period=0.2)  # fmt: skip

    a, b = elector("a"), elector("b")
    tasks = [asyncio.create_task(e.run()) for e in (a, b)]
    try:
        async def one_leader() -> bool:
            return a.is_leader != b.is_leader

        await wait_until_async(one_leader, what="one leader")
        leader, follower = (a, b) if a.is_leader else (b, a)
        for _ in range(5):  # several renew periods: still exactly one
            await asyncio.sleep(leader.timing.retry)
            assert leader.is_leader and not follower.is_leader
        index = 0 if leader is a else 1
        tasks[index].cancel()
        await asyncio.gather(tasks[index], return_exceptions=True)
        await leader.release()

        async def follower_leads() -> bool:
            return follower.is_leader

        await wait_until_async(follower_leads, what="the follower to take over")
        lease = await kube_api.request(
            "GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/test-lease"
        )
        assert lease["spec"]["holderIdentity"] == follower.identity
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_leader_stops_leading_when_the_api_is_gone(
    kube_api: KubeApi, fake_apiserver: FakeApiServer
) -> None:
    elector = LeaderElector(kube_api, "default", "lonely", "solo",
                            lease_duration=2, renew_deadline=1.5, retry_period=0.2)  # fmt: skip
    task = asyncio.create_task(elector.run())
    try:
        async def leading() -> bool:
            return elector.is_leader

        await wait_until_async(leading, what="leadership")
        fake_apiserver.outage("503")

        async def not_leading() -> bool:
            return not elector.is_leader

        await wait_until_async(not_leading, what="leadership to lapse without renewals")
        assert not task.done()  # it keeps campaigning
        fake_apiserver.outage("off")
        await wait_until_async(leading, what="leadership again after the outage")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

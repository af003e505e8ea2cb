"""Lease election with announcer timings, against the API-server double over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from kubernetes_asyncio import client

from pyingress.lease import LeaseElector, LeaseTiming
from pyingress.sources.kubeclient import KubeApi
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import wait_until_async

TIMING = LeaseTiming(duration=1.0, renew=0.1, retry=0.05)
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/test-lease"


@pytest.fixture
async def api(api_client: client.ApiClient) -> AsyncIterator[KubeApi]:
    yield KubeApi(api_client)


class Runner:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.tasks: dict[LeaseElector, asyncio.Task[None]] = {}

    def start(self, name: str, log: list[tuple[str, bool]]) -> LeaseElector:
        elector = LeaseElector(self.api, "default", "test-lease", name, TIMING,
                               lambda leading: log.append((name, leading)))  # fmt: skip
        self.tasks[elector] = asyncio.get_running_loop().create_task(elector.run())
        return elector

    async def kill(self, elector: LeaseElector) -> None:
        """Stop without handing the Lease back, as a SIGKILLed process would."""
        task = self.tasks[elector]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


@pytest.fixture
async def runner(api: KubeApi) -> AsyncIterator[Runner]:
    r = Runner(api)
    try:
        yield r
    finally:
        await r.close()


def until(predicate: Callable[[], bool]) -> Callable[[], object]:
    async def check() -> bool:
        return predicate()

    return check


async def holder(api: KubeApi) -> str:
    return str((await api.request("GET", LEASE))["spec"].get("holderIdentity") or "")


async def test_one_leader_and_takeover_after_expiry(api: KubeApi, runner: Runner) -> None:
    log: list[tuple[str, bool]] = []
    first = runner.start("node-a", log)
    await wait_until_async(until(lambda: first.is_leader), what="node-a to lead")
    second = runner.start("node-b", log)
    await wait_until_async(until(lambda: second.holder is not None), what="node-b to look")
    assert not second.is_leader and await holder(api) == "node-a"

    await runner.kill(first)
    await wait_until_async(until(lambda: second.is_leader), what="node-b to take over")
    assert await holder(api) == "node-b"
    lease = await api.request("GET", LEASE)
    assert lease["spec"]["leaseTransitions"] == 1
    assert log == [("node-a", True), ("node-a", False), ("node-b", True)]


async def test_candidate_that_stops_qualifying_hands_over(api: KubeApi, runner: Runner) -> None:
    log: list[tuple[str, bool]] = []
    first = runner.start("node-a", log)
    await wait_until_async(until(lambda: first.is_leader))
    second = runner.start("node-b", log)
    await wait_until_async(until(lambda: second.holder is not None))
    first.set_candidate(False)
    await wait_until_async(until(lambda: second.is_leader), what="node-b to take over")
    assert not first.is_leader and await holder(api) == "node-b"


async def test_leader_steps_down_when_the_api_is_gone(
    api: KubeApi, runner: Runner, fake_apiserver: FakeApiServer
) -> None:
    log: list[tuple[str, bool]] = []
    first = runner.start("node-a", log)
    await wait_until_async(until(lambda: first.is_leader))
    fake_apiserver.outage("503")
    try:
        await wait_until_async(until(lambda: not first.is_leader), what="node-a to step down")
    finally:
        fake_apiserver.outage("off")
    await wait_until_async(until(lambda: first.is_leader), what="node-a to lead again")

"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go does it.

A small compare-and-swap loop rather than ``kubernetes_asyncio.leaderelection``: that module
needs whole-second periods of at least one second, gives up when the API server is unreachable
(the error escapes ``run``), and measures expiry with the wall clock. Here every write carries
the Lease's resourceVersion, so of two candidates racing for an expired Lease only one wins
(the other gets 409 Conflict); expiry is judged on this process's monotonic clock from the
moment it last saw the record change, so clock skew between nodes does not matter.

A leader that cannot renew within ``renew_deadline`` stops considering itself leader at once
(:attr:`is_leader` checks the time, so even a hung request cannot stretch it), well before
another candidate may take over at ``lease_duration``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pyingress.sources.kubeclient import JSON, KubeApi, KubeError

log = logging.getLogger(__name__)

Listener = Callable[[bool], None]


def micro_time() -> str:
    """A Lease MicroTime: RFC 3339 with six fractional digits."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for one Lease until cancelled; :attr:`is_leader` says who writes."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease duration > renew deadline > retry period > 0")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._renewed_at: float | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._listeners: list[Listener] = []
        self._was_leader = False
        self.changed = asyncio.Event()
        """Set whenever leadership is gained or lost; consumers clear it."""

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def run(self) -> None:
        """Acquire or renew every retry period (with jitter) until cancelled."""
        try:
            while True:
                started = self._clock()  # the Lease counts from before the write, not after
                try:
                    if await self._try_acquire_or_renew():
                        self._renewed_at = started
                except KubeError as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                self._notify()
                await self._sleep_until_next_try()
        finally:
            self._notify(force_loss=True)

    async def release(self) -> None:
        """Hand the Lease back (graceful shutdown) so a successor need not wait it out."""
        if not self.is_leader:
            return
        self._renewed_at = None
        self._notify()
        try:
            lease = await self.api.request("GET", self.path, timeout=self.retry_period)
            spec = lease.setdefault("spec", {})
            if spec.get("holderIdentity") == self.identity:
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time())
                await self.api.request("PUT", self.path, body=lease, timeout=self.retry_period)
                log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("cannot release lease %s/%s: %s", self.namespace, self.name, exc)

    async def _sleep_until_next_try(self) -> None:
        delay = self.retry_period
        if not self.is_leader:
            delay *= 1 + random.uniform(0, 0.2)
        renewed = self._renewed_at
        if renewed is not None and self.is_leader:
            # Wake up in time to notice a missed renew deadline.
            delay = min(delay, max(0.0, renewed + self.renew_deadline - self._clock()))
        await asyncio.sleep(delay)

    def _notify(self, force_loss: bool = False) -> None:
        leader = self.is_leader and not force_loss
        if leader == self._was_leader:
            return
        self._was_leader = leader
        log.info("%s %s leadership of %s/%s", self.identity, "acquired" if leader else "lost",
                 self.namespace, self.name)  # fmt: skip
        self.changed.set()
        for listener in self._listeners:
            listener(leader)

    async def _try_acquire_or_renew(self) -> bool:
        timeout = self.renew_deadline / 2
        try:
            lease = await self.api.request("GET", self.path, timeout=timeout)
        except KubeError as exc:
            if exc.status != 404:
                raise
            return await self._write(None, self._record(acquired=True, transitions=0), timeout)
        spec: JSON = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        now = self._clock()
        observed = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if observed != self._observed:
            self._observed, self._observed_at = observed, now
        if holder == self.identity:
            record = self._record(acquired=False, transitions=spec.get("leaseTransitions") or 0)
            record["acquireTime"] = spec.get("acquireTime") or record["renewTime"]
            return await self._write(lease, record, timeout)
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and now < self._observed_at + duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + 1  # a new holder, as client-go
        record = self._record(acquired=True, transitions=transitions)
        return await self._write(lease, record, timeout)

    def _record(self, acquired: bool, transitions: int) -> JSON:
        stamp = micro_time()
        record: JSON = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": stamp,
            "leaseTransitions": transitions,
        }
        if acquired:
            record["acquireTime"] = stamp
        return record

    async def _write(self, lease: JSON | None, record: JSON, timeout: float) -> bool:
        """PUT the Lease with its resourceVersion (a compare-and-swap); False on a lost race."""
        if lease is None:
            body: JSON = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": record,
            }
            method, path = "POST", self.path.rsplit("/", 1)[0]
        else:
            body = {**lease, "spec": {**(lease.get("spec") or {}), **record}}
            method, path = "PUT", self.path
        try:
            await self.api.request(method, path, body=body, timeout=timeout)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            log.info("%s took lease %s/%s", self.identity, self.namespace, self.name)
        return True

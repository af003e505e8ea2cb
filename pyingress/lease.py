"""Leader election on one ``coordination.k8s.io/v1`` Lease, as client-go does it.

One small compare-and-swap loop serves every election in pyingress: the status writer among
``serve`` replicas (:class:`pyingress.status.leader.LeaderElector`, client-go's 15/10/2 s), and
the announcer's allocator and per-address Leases (about a second, for fast failover). Rather
than ``kubernetes_asyncio.leaderelection``, because that module needs whole-second periods,
gives up when the API server is unreachable and judges expiry with the wall clock.

- Every write carries the Lease's resourceVersion, so of two candidates racing for an expired
  Lease only one wins; the other gets 409 Conflict and reads the winner next time.
- Expiry is judged on this process's monotonic clock from the moment it last saw the record
  change, so clocks of different nodes never need to agree.
- A leader that has not renewed for ``renew_deadline`` stops leading on its own (``is_leader``
  checks the clock, and a hung request is cut off at the deadline), well before anyone else may
  take the Lease at ``duration``.
- A candidate that stops qualifying (:meth:`LeaseElector.set_candidate`) or stops running
  (:meth:`LeaseElector.release`) hands the Lease back, so a successor need not wait it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyingress.sources.kubeclient import JSON, KubeApi, KubeError

log = logging.getLogger("pyingress.lease")

Listener = Callable[[bool], None]

JITTER = 0.2
"""Candidates wait up to this fraction longer than ``retry``, so they do not move in step."""


def micro_time(now: float | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339, UTC, six fractional digits) for ``now`` or the present."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whole_seconds(duration: float) -> int:
    """``leaseDurationSeconds`` is a whole number: round up, never promise less than we keep."""
    return max(1, math.ceil(duration))


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """How a candidate paces itself, in seconds (defaults: client-go's).

    ``renew_deadline`` defaults to ``duration`` minus one retry or half a renewal (whichever is
    longer), and never below half the duration: room for one more try before others may take
    over.
    """

    duration: float = 15.0
    """A Lease not renewed for this long is free for another candidate."""
    renew: float = 2.0
    """How often the leader renews."""
    retry: float = 2.0
    """How often a non-leader looks whether the Lease has expired."""
    renew_deadline: float | None = None
    """The leader stops leading this long after its last successful renewal."""

    def __post_init__(self) -> None:
        if not (self.retry > 0 and self.duration > self.deadline > self.renew > 0):
            raise ValueError(
                "need lease duration > renew deadline > renew period > 0 and retry period > 0"
            )

    @property
    def deadline(self) -> float:
        if self.renew_deadline is not None:
            return self.renew_deadline
        return max(self.duration - max(self.retry, self.renew / 2), self.duration / 2)


class LeaseElector:
    """Campaigns for one Lease until cancelled; :attr:`is_leader` says whether we hold it.

    Listeners (``on_change`` and :meth:`subscribe`) are called with ``True``/``False`` on every
    change of leadership, and :attr:`changed` is set; a cancelled :meth:`run` reports the loss.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming | None = None,
        on_change: Listener | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.candidate = True
        self.holder: str | None = None
        """The holder this process last read from the Lease (``""``: nobody); None before."""
        self.changed = asyncio.Event()
        """Set whenever leadership is gained or lost; consumers clear it."""
        self._clock = clock
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._renewed_at: float | None = None
        self._reported = False
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        self._wake = asyncio.Event()
        self._failing = False

    @property
    def is_leader(self) -> bool:
        """True while our last successful write is younger than the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.timing.deadline

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def set_candidate(self, candidate: bool) -> None:
        """Stand for the Lease or not; a leader that stops qualifying hands it back at once."""
        if candidate != self.candidate:
            self.candidate = candidate
            self._wake.set()

    async def run(self) -> None:
        """Acquire or renew until cancelled; API failures are retried, never raised."""
        try:
            while True:
                await self._attempt()
                self._report()
                await self._pause()
        finally:
            self._renewed_at = None
            self._report()

    async def release(self) -> None:
        """Hand the Lease back (shutdown, or no longer a candidate) if we hold it."""
        self._renewed_at = None
        self._report()
        try:
            async with asyncio.timeout(self.timing.deadline):
                lease = await self.api.request("GET", self.path)
                spec = lease.setdefault("spec", {})
                if spec.get("holderIdentity") != self.identity:
                    return
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time())
                await self.api.request("PUT", self.path, body=lease)
        except (KubeError, TimeoutError) as exc:
            if not (isinstance(exc, KubeError) and exc.status == 404):  # gone: nothing to hand back
                log.warning(
                    "cannot release lease %s/%s: %s", self.namespace, self.name, exc or "timed out"
                )
        else:
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)

    async def _attempt(self) -> None:
        """One read and at most one write, cut off where a leader's deadline would pass."""
        started = self._clock()  # the Lease counts from before the write, not after
        budget = self.timing.deadline
        if self.is_leader and self._renewed_at is not None:
            budget = self._renewed_at + self.timing.deadline - started
        try:
            async with asyncio.timeout(budget):
                renewed = await self._acquire_or_renew()
        except (KubeError, TimeoutError) as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "lease %s/%s: %s", self.namespace, self.name, exc or "timed out")
            self._failing = True
            return
        self._failing = False
        if renewed:
            self._renewed_at = started

    async def _pause(self) -> None:
        """Sleep until the next try; a leader wakes in time to notice a missed deadline."""
        renewed = self._renewed_at
        if renewed is not None and self.is_leader:
            delay = min(self.timing.renew, renewed + self.timing.deadline - self._clock())
        else:
            delay = self.timing.retry * (1 + random.uniform(0, JITTER))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, delay))

    def _report(self) -> None:
        leader = self.is_leader
        if leader == self._reported:
            return
        self._reported = leader
        log.info("%s %s lease %s/%s", self.identity, "acquired" if leader else "lost",
                 self.namespace, self.name)  # fmt: skip
        self.changed.set()
        for listener in self._listeners:
            listener(leader)

    async def _acquire_or_renew(self) -> bool:
        """True when we wrote the Lease as its holder."""
        try:
            lease = await self.api.request("GET", self.path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            self.holder = ""
            return self.candidate and await self._create()
        spec: JSON = lease.get("spec") or {}
        holder = self.holder = str(spec.get("holderIdentity") or "")
        self._observe(spec)
        if holder == self.identity:
            if not self.candidate:
                await self.release()
                return False
            return await self._write(lease, acquiring=False)
        self._renewed_at = None  # someone else holds it: we lead no more, whatever the clock
        if self.candidate and self._expired(spec):
            return await self._write(lease, acquiring=True)
        return False

    def _observe(self, spec: JSON) -> None:
        seen = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()

    def _expired(self, spec: JSON) -> bool:
        """Free, or unchanged for longer than its holder promised to keep it.

        A record carrying our own rounded duration was written by a peer configured like us, so
        our exact (possibly fractional) duration applies; any other value is the holder's own.
        """
        if not spec.get("holderIdentity"):
            return True
        recorded = spec.get("leaseDurationSeconds")
        duration = self.timing.duration
        if isinstance(recorded, int | float) and recorded != whole_seconds(duration):
            duration = float(recorded)
        return self._clock() - self._observed_at >= duration

    def _record(self, spec: JSON, acquiring: bool) -> JSON:
        stamp = micro_time()
        record = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": whole_seconds(self.timing.duration),
            "renewTime": stamp,
        }
        if acquiring:  # a new holder counts as a transition, as in client-go
            record["acquireTime"] = stamp
            record["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + bool(spec)
        elif not record.get("acquireTime"):
            record["acquireTime"] = stamp
        return record

    async def _create(self) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._record({}, acquiring=True),
        }
        return await self._send("POST", self.path.rsplit("/", 1)[0], body)

    async def _write(self, lease: JSON, acquiring: bool) -> bool:
        body = {**lease, "spec": self._record(lease.get("spec") or {}, acquiring)}
        return await self._send("PUT", self.path, body)

    async def _send(self, method: str, path: str, body: JSON) -> bool:
        """POST or PUT with the read resourceVersion (a compare-and-swap); False on a lost race."""
        try:
            await self.api.request(method, path, body=body)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

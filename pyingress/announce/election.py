"""Leader election on one ``coordination.k8s.io/v1`` Lease, by compare-and-swap on its version.

The same algorithm as client-go's leaderelection, small enough to read in one sitting:

- expiry is judged by *local* time since this process last saw the record change, so node
  clocks never need to agree;
- the leader renews every ``renew`` seconds and gives up leadership on its own when it has not
  renewed for ``deadline`` seconds (before anyone else may consider the Lease expired);
- a candidate that stops qualifying (no local endpoint, proxy not ready) hands the Lease back so
  another node can take it at once instead of waiting for expiry.

Defaults are tuned for fast failover (2 s lease, 0.5 s renew, 0.25 s retry): a dead node's
addresses move after about two seconds, for roughly ``addresses x nodes x 4`` reads per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyingress.sources.kubeclient import KubeApi, KubeError

log = logging.getLogger("pyingress.announce")

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    duration: float = 2.0
    renew: float = 0.5
    retry: float = 0.25

    @property
    def deadline(self) -> float:
        """Stop leading this long after the last successful renewal (safely below ``duration``)."""
        return max(self.duration - max(self.retry, self.renew / 2), self.duration / 2)


def micro_time(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_name(ip: object) -> str:
    return "pyingress-announce-" + str(ip).replace(".", "-").replace(":", "-")


class Elector:
    """Runs the election for one Lease; ``on_change(True/False)`` reports leadership changes."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        on_change: Callable[[bool], None],
    ) -> None:
        self.api = api
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_change = on_change
        self.candidate = True
        self.leading = False
        self._wake = asyncio.Event()
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def set_candidate(self, candidate: bool) -> None:
        if candidate != self.candidate:
            self.candidate = candidate
            self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except KubeError as exc:
                    log.debug("lease %s: %s", self.name, exc)
                if self.leading and time.monotonic() - self._renewed_at > self.timing.deadline:
                    log.warning("lease %s: could not renew in time; stepping down", self.name)
                    self._set_leading(False)
                pause = self.timing.renew if self.leading else self.timing.retry
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
        finally:
            self._set_leading(False)

    async def release(self) -> None:
        """Hand the Lease back (on shutdown or when no longer a candidate)."""
        self._set_leading(False)
        with contextlib.suppress(KubeError):
            lease = await self.api.request("GET", self.path)
            spec = lease.setdefault("spec", {})
            if spec.get("holderIdentity") == self.identity:
                spec["holderIdentity"] = ""
                spec["renewTime"] = micro_time()
                await self.api.request("PUT", self.path, body=lease)

    async def _step(self) -> None:
        try:
            lease = await self.api.request("GET", self.path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            if self.candidate:
                await self._create()
            return
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        now = time.monotonic()
        seen = (holder, str(spec.get("renewTime") or ""))
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        if holder == self.identity:
            if self.candidate:
                await self._write(lease, acquiring=False)
            else:
                await self.release()
            return
        self._set_leading(False)
        expired = not holder or now - self._observed_at > self.timing.duration
        if self.candidate and expired:
            await self._write(lease, acquiring=True)

    def _record(self, spec: JSON, acquiring: bool) -> JSON:
        now = micro_time()
        spec = dict(spec)
        if acquiring:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if spec.get("holderIdentity") else 0
            )
            spec["acquireTime"] = now
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = max(1, math.ceil(self.timing.duration))
        spec["renewTime"] = now
        return spec

    async def _create(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._record({}, acquiring=True),
        }
        try:
            await self.api.request("POST", self.collection, body=body)
        except KubeError as exc:
            if exc.status == 409:
                return  # someone else created it first; the next step reads theirs
            raise
        self._won()

    async def _write(self, lease: JSON, acquiring: bool) -> None:
        lease = dict(lease)
        lease["spec"] = self._record(lease.get("spec") or {}, acquiring)
        try:
            await self.api.request("PUT", self.path, body=lease)
        except KubeError as exc:
            if exc.status == 409:
                return  # lost the race; the next read shows the winner
            raise
        self._won()

    def _won(self) -> None:
        self._renewed_at = time.monotonic()
        self._set_leading(True)

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("lease %s: %s", self.name, "acquired" if leading else "lost")
            self.on_change(leading)

"""Compile problems of Ingresses become Kubernetes Events (``kubectl describe ingress``).

Events are deduplicated and rate-limited, because the compiler reports the same problem on
every compile: one Event per (object, reason, message), whose ``count`` and ``lastTimestamp``
are bumped with a PATCH at most once per ``interval``; and a global rate limit caps the
writes of all Events together, so a storm of broken Ingresses cannot flood the API server.
Which Event belongs to which problem is remembered however long the problem was gone (in a
bounded LRU, as client-go's correlator does), so a problem that comes back is counted on its
Event instead of getting a second one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyingress.model import KubeObject, ObjectRef, Problem
from pyingress.ratelimit import RateLimiter
from pyingress.sources.kubeclient import KubeApi, KubeError

log = logging.getLogger(__name__)

COMPONENT = "pyingress"
REPORTING_CONTROLLER = "pyingress.io/ingress-controller"
API_VERSIONS = {"Ingress": "networking.k8s.io/v1"}

Key = tuple[ObjectRef, str, str]

MAX_RECORDED = 4096
"""Events remembered for deduplication (client-go's correlator keeps as many); the one whose
problem was reported least recently is forgotten first."""

RETRY_DELAY = 1.0
"""After a write the API server could not take (unreachable, 429, 5xx), try again this much
later, as long as the problem is still reported."""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Recorded:
    name: str
    count: int
    posted_at: float


class EventRecorder:
    """Posts a Warning Event for each problem of an Ingress that is in the store.

    :meth:`observe` is synchronous (it is the reconciler's ``on_problems`` hook); the writes
    happen in :meth:`run`. ``active`` lets only the elected replica write, so two replicas do
    not double every Event.
    """

    def __init__(
        self,
        api: KubeApi,
        lookup: Callable[[ObjectRef], KubeObject | None],
        *,
        interval: float = 60.0,
        rate: float = 1.0,
        burst: int = 25,
        active: Callable[[], bool] = lambda: True,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.lookup = lookup
        self.interval = interval
        self.writes = RateLimiter(rate, burst, clock)
        self._clock = clock
        self.active = active
        self.instance = instance or os.environ.get("POD_NAME") or os.uname().nodename
        self._recorded: OrderedDict[Key, _Recorded] = OrderedDict()
        self._pending: dict[Key, Problem] = {}
        self._current: set[Key] = set()
        self._wake = asyncio.Event()

    def observe(self, problems: Iterable[Problem]) -> None:
        """Queue an Event write for every Ingress problem not written in the last interval."""
        now = self._clock()
        pending: dict[Key, Problem] = {}
        current: set[Key] = set()
        for problem in problems:
            if problem.ref.kind not in API_VERSIONS:
                continue
            key = (problem.ref, problem.reason, problem.message)
            current.add(key)
            recorded = self._recorded.get(key)
            if recorded is not None:
                self._recorded.move_to_end(key)
            if not self._recent(recorded, now):
                pending[key] = problem
        self._pending = pending  # problems solved meanwhile are not reported late
        self._current = current
        self.notify()

    def notify(self, *_: object) -> None:
        """Look at the queue again (new problems, or this replica became the writer)."""
        self._wake.set()

    def _recent(self, recorded: _Recorded | None, now: float) -> bool:
        """Whether the Event was written less than an interval ago (and so is not bumped)."""
        return recorded is not None and now - recorded.posted_at < self.interval

    def _remember(self, key: Key, recorded: _Recorded) -> None:
        self._recorded[key] = recorded
        self._recorded.move_to_end(key)
        while len(self._recorded) > MAX_RECORDED:
            self._recorded.popitem(last=False)

    async def run(self) -> None:
        """Write queued Events until cancelled, within the rate limit."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and self.active():
                wait = self.writes.wait_time(None)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                key = next(iter(self._pending))
                await self._write(key, self._pending.pop(key))

    async def _write(self, key: Key, problem: Problem) -> None:
        obj = self.lookup(problem.ref)
        if obj is None:
            return  # the object is gone; nothing to attach the Event to
        recorded = self._recorded.get(key)
        if self._recent(recorded, self._clock()):
            return  # queued again while its first write was in flight: that one counts
        try:
            if recorded is not None:
                try:
                    await self._bump(problem.ref.namespace, recorded)
                    log.info("event bumped %s reason=%s count=%d", problem.ref, problem.reason,
                             recorded.count)  # fmt: skip
                    return
                except KubeError as exc:
                    if exc.status != 404:
                        raise
            name = await self._create(problem, obj)
            self._remember(key, _Recorded(name, 1, self._clock()))
            log.info("event posted %s reason=%s", problem.ref, problem.reason)
        except KubeError as exc:
            transient = exc.status in (0, 429) or exc.status >= 500
            log.warning("cannot record event for %s (%s): %s%s", problem.ref, problem.reason,
                        exc, "; retrying" if transient else "")  # fmt: skip
            if transient:
                delay = exc.retry_after or RETRY_DELAY
                asyncio.get_running_loop().call_later(delay, self._retry, key, problem)

    def _retry(self, key: Key, problem: Problem) -> None:
        """Queue a failed write again, unless the problem was solved (or queued anew) meanwhile."""
        if key in self._current and key not in self._pending:
            self._pending[key] = problem
            self.notify()

    async def _create(self, problem: Problem, obj: KubeObject) -> str:
        meta = obj.get("metadata") or {}
        stamp = now_rfc3339()
        name = f"{problem.ref.name}.{secrets.token_hex(8)}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": problem.ref.namespace},
            "involvedObject": {
                "apiVersion": API_VERSIONS[problem.ref.kind],
                "kind": problem.ref.kind,
                "namespace": problem.ref.namespace,
                "name": problem.ref.name,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": "Warning",
            "reason": problem.reason,
            "message": problem.message,
            "source": {"component": COMPONENT},
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
        }
        path = f"/api/v1/namespaces/{problem.ref.namespace}/events"
        await self.api.request("POST", path, body=event)
        return name

    async def _bump(self, namespace: str, recorded: _Recorded) -> None:
        patch = {"count": recorded.count + 1, "lastTimestamp": now_rfc3339()}
        path = f"/api/v1/namespaces/{namespace}/events/{recorded.name}"
        await self.api.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        recorded.count += 1
        recorded.posted_at = self._clock()

"""Object storage with one global resourceVersion counter and a bounded event history.

Like etcd, every successful write of any object takes the next revision. The history keeps the
last ``history_size`` events so that a watch can resume from an older revision; anything older was
"compacted" and a watch from there gets 410 Expired.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    """One write as a watch sees it. ``previous`` lets a filtered watch turn MODIFIED into
    ADDED/DELETED when an object starts or stops matching."""

    type: str  # ADDED | MODIFIED | DELETED
    rv: int
    resource: str
    obj: JSON
    previous: JSON | None


class Signal:
    """Out-of-band messages a subscriber receives alongside changes (test hooks)."""

    DROP = "drop"
    ABORT = "abort"
    BOOKMARK = "bookmark"


Item = Change | tuple[str, int]
"""What a subscriber's queue holds: a change, or a (Signal, revision-when-sent) pair."""


@dataclass(eq=False)
class Subscriber:
    resource: str
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self, history_size: int = 10_000) -> None:
        self.rv = 0
        self.compacted_rv = 0
        self._history: deque[Change] = deque()
        self._history_size = history_size
        self._objects: dict[str, dict[ObjectKey, JSON]] = {}
        self._subscribers: set[Subscriber] = set()
        self._rv_changed: asyncio.Event | None = None
        self._latest: dict[str, int] = {}

    # -- reads ------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        found = self._objects.get(resource, {}).get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[JSON]:
        """All objects of a resource in etcd key order (namespace, then name)."""
        bucket = self._objects.get(resource, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [copy.deepcopy(bucket[k]) for k in keys]

    def has_objects(self, resource: str) -> bool:
        return bool(self._objects.get(resource))

    def namespaced_keys(self, namespace: str) -> Iterable[tuple[str, str]]:
        for resource, bucket in self._objects.items():
            for ns, name in list(bucket):
                if ns == namespace:
                    yield resource, name

    # -- writes -----------------------------------------------------------------------------

    def put(self, resource: str, obj: JSON, event: str) -> JSON:
        """Store ``obj`` at the next revision and record ``event`` (ADDED or MODIFIED)."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(resource, {})
        previous = bucket.get(key)
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._next_rv())
        bucket[key] = stored
        self._record(Change(event, self.rv, resource, stored, previous))
        return copy.deepcopy(stored)

    def delete(self, resource: str, namespace: str, name: str) -> JSON:
        """Remove an object; the DELETED event carries its last state with the deletion's RV."""
        previous = self._objects[resource].pop((namespace, name))
        final = copy.deepcopy(previous)
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(Change("DELETED", self.rv, resource, final, previous))
        return copy.deepcopy(final)

    def _next_rv(self) -> int:
        self.rv += 1
        if self._rv_changed is not None:
            self._rv_changed.set()
            self._rv_changed = None
        return self.rv

    def latest(self, resource: str) -> int:
        """The revision of the last change to any object of ``resource`` (0 if none yet): what
        a per-type watch cache has processed, and so the newest RV its bookmarks can carry."""
        return self._latest.get(resource, 0)

    def _record(self, change: Change) -> None:
        self._latest[change.resource] = change.rv
        self._history.append(change)
        while len(self._history) > self._history_size:
            self.compacted_rv = self._history.popleft().rv
        for subscriber in self._subscribers:
            if subscriber.resource == change.resource:
                subscriber.queue.put_nowait(change)

    # -- watching ---------------------------------------------------------------------------

    def subscribe(self, resource: str, since: int) -> tuple[Subscriber, list[Change]]:
        """Start receiving changes, returning the retained ones newer than ``since`` first.

        Both happen without yielding to the event loop, so no change can fall in between.
        """
        subscriber = Subscriber(resource)
        backlog = [c for c in self._history if c.resource == resource and c.rv > since]
        self._subscribers.add(subscriber)
        return subscriber, backlog

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def signal(self, message: str) -> int:
        """Send a hook message to every open watch; returns how many received it."""
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait((message, self.rv))
        return len(self._subscribers)

    @property
    def watch_count(self) -> int:
        return len(self._subscribers)

    def compact(self) -> None:
        """Forget all history, so any watch from an older revision gets 410 Expired."""
        self._history.clear()
        self.compacted_rv = self.rv

    async def wait_for_rv(self, rv: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.rv < rv:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._rv_changed is None:
                self._rv_changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._rv_changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

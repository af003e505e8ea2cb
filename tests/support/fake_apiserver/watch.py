"""Streaming watch: one JSON event per line over a chunked response, like ``cacher.go``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.support.fake_apiserver.errors import ApiError, bad_request, expired
from tests.support.fake_apiserver.registry import typed
from tests.support.fake_apiserver.resources import Resource
from tests.support.fake_apiserver.selectors import Predicate
from tests.support.fake_apiserver.store import Change, Item, Signal, Store, Subscriber

JSON = dict[str, Any]
_FINAL_BOOKMARK_LEAD = 2.0  # the real server sends its last bookmark 2 s before the deadline


class WatchAborted(Exception):
    """Raised inside the response stream so the server cuts the connection without ending it."""


@dataclass
class WatchRequest:
    resource: Resource
    namespace: str | None
    match: Predicate
    resource_version: str | None
    timeout: float
    bookmarks: bool
    bookmark_interval: float


def is_watch(value: str | None) -> bool:
    """``watch`` present and not ``0``/``false`` (the real converter's rule)."""
    return value is not None and value.lower() not in ("0", "false")


def encode(event_type: str, obj: JSON) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def error_event(error: ApiError) -> bytes:
    return encode("ERROR", error.status())


def bookmark(resource: Resource, rv: int) -> bytes:
    obj: JSON = {"kind": resource.kind, "apiVersion": resource.api_version,
                 "metadata": {"resourceVersion": str(rv), "creationTimestamp": None}}
    if resource.kind in ("Ingress", "Service", "Namespace", "IngressClass", "Lease"):
        obj["spec"] = {}
    if resource.status_subresource:
        obj["status"] = {}
    return encode("BOOKMARK", obj)


class Watch:
    """One open watch: the initial state or retained history first, then live changes."""

    def __init__(self, store: Store, request: WatchRequest) -> None:
        self.store = store
        self.request = request

    def _visible(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        namespace = self.request.namespace
        if namespace is not None and obj["metadata"].get("namespace", "") != namespace:
            return False
        return self.request.match(obj)

    def convert(self, change: Change) -> tuple[str, JSON] | None:
        """Filter a change; an object that starts or stops matching becomes ADDED/DELETED."""
        now, before = self._visible(change.obj), self._visible(change.previous)
        if change.type == "DELETED":
            return ("DELETED", change.obj) if now else None
        if change.type == "ADDED" or (now and not before):
            return ("ADDED", change.obj) if now else None
        if now:
            return "MODIFIED", change.obj
        if before and change.previous is not None:
            gone = dict(change.previous)
            gone["metadata"] = {**change.previous["metadata"], "resourceVersion": str(change.rv)}
            return "DELETED", gone
        return None

    def open(self, expired_as_http: bool) -> AsyncIterator[bytes]:
        """Check where the watch starts; a too-old RV is a 410, as an HTTP status when
        ``expired_as_http`` and otherwise as an in-stream ERROR event (the v1.20 behaviour).

        The watch is registered here, before the response headers go out, as in the real
        server: a client holding the headers knows that later writes reach it live.
        """
        start = parse_rv(self.request.resource_version)
        if start is not None and start < self.store.compacted_rv:
            error = expired(start, self.store.compacted_rv)
            if expired_as_http:
                raise error
            return _single(error_event(error))
        key = self.request.resource.key
        initial: list[JSON] = []
        if start is None:
            initial = [o for o in self.store.list_objects(key, self.request.namespace)
                       if self.request.match(o)]
            # The cacher replays its whole store at the cache's RV (0 when the type is empty).
            floor = self.store.latest(key) if self.store.has_objects(key) else 0
            start = self.store.rv
        else:
            floor = start
        subscriber, backlog = self.store.subscribe(key, start)
        if backlog:
            floor = backlog[-1].rv
        return self._stream(start, floor, initial, subscriber, backlog)

    async def _stream(self, start: int, floor: int, initial: list[JSON], subscriber: Subscriber,
                      backlog: list[Change]) -> AsyncIterator[bytes]:
        resource = self.request.resource
        try:
            for obj in initial:
                yield encode("ADDED", typed(resource, obj))
            for change in backlog:
                converted = self.convert(change)
                if converted:
                    yield encode(converted[0], typed(resource, converted[1]))
            async for line in self._live(start, floor, subscriber.queue):
                yield line
        finally:
            self.store.unsubscribe(subscriber)

    async def _live(self, start: int, floor: int, queue: asyncio.Queue[Item]
                    ) -> AsyncIterator[bytes]:
        """Live changes, and bookmarks while the type has a change newer than ``floor`` (the
        start point after the replay): v1.20's cacher sends a bookmark only with the RV of the
        last change it processed for this type, and a watcher drops any not newer than its
        start. Writes to other types do not count."""
        resource = self.request.resource
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request.timeout
        final_bookmark = deadline - _FINAL_BOOKMARK_LEAD
        next_bookmark = loop.time() + self.request.bookmark_interval
        while True:
            now = loop.time()
            if now >= deadline:
                return
            wake = deadline
            if self.request.bookmarks:
                wake = min(wake, next_bookmark, final_bookmark if final_bookmark > now else wake)
            try:
                item = await asyncio.wait_for(queue.get(), max(wake - now, 0))
            except TimeoutError:
                now = loop.time()
                if self.request.bookmarks and now < deadline:
                    next_bookmark = now + self.request.bookmark_interval
                    if now >= final_bookmark - 0.1:
                        final_bookmark = float("-inf")
                    latest = self.store.latest(resource.key)
                    if latest > floor:
                        yield bookmark(resource, latest)
                continue
            if isinstance(item, tuple):
                signal, rv = item
                if signal == Signal.DROP:
                    return
                if signal == Signal.ABORT:
                    raise WatchAborted("watch aborted by test hook")
                if signal == Signal.BOOKMARK and self.request.bookmarks:
                    yield bookmark(resource, rv)
                continue
            if item.rv <= start:
                continue
            converted = self.convert(item)
            if converted:
                yield encode(converted[0], typed(resource, converted[1]))


def parse_rv(value: str | None) -> int | None:
    """``None`` for unset or "0" (start from the current state), else the revision."""
    if value in (None, "", "0"):
        return None
    try:
        rv = int(str(value))
    except ValueError:
        raise bad_request(f"invalid resource version: {value!r}") from None
    if rv < 0:
        raise bad_request(f"invalid resource version: {value!r}")
    return rv


async def _single(line: bytes) -> AsyncIterator[bytes]:
    yield line

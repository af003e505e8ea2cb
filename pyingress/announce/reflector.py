"""List-then-watch one collection into a dict, resuming from the last version and re-listing
after ``410 Expired``; the announcer needs only Services and EndpointSlices."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from pyingress.model import ObjectRef, ref_of
from pyingress.sources.kubeclient import JSON, Backoff, KubeApi, KubeError

log = logging.getLogger("pyingress.announce")


class Expired(Exception):
    """The watch's resourceVersion is older than the server keeps; list again."""


class Reflector:
    def __init__(
        self, api: KubeApi, path: str, kind: str, on_change: Callable[[], None],
        watch_timeout: float = 300.0,
    ) -> None:  # fmt: skip
        self.api = api
        self.path = path
        self.kind = kind
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.items: dict[ObjectRef, JSON] = {}
        self.listed = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff()
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
                backoff.reset()
            except Expired:
                log.info("%s watch expired; listing again", self.kind)
                version = None
            except KubeError as exc:
                if exc.status == 410:
                    version = None
                    continue
                delay = backoff.next_delay(exc.retry_after)
                log.warning("%s: %s; retrying in %.1fs", self.kind, exc, delay)
                await asyncio.sleep(delay)
            except (ValueError, TypeError, AttributeError) as exc:  # a malformed response
                delay = backoff.next_delay()
                log.warning("%s: bad response %r; retrying in %.1fs", self.kind, exc, delay)
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        body = await self.api.request("GET", self.path)
        self.items = {ref_of(item, self.kind): item for item in body.get("items") or []}
        self.listed.set()
        self.on_change()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> str:
        timeout = int(self.watch_timeout * random.uniform(1.0, 1.2))
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(timeout),
        }
        started, events = time.monotonic(), 0
        async for event in self.api.watch(self.path, query, timeout + 30):
            events += 1
            version = self._apply(event) or version
        if not events and time.monotonic() - started < 1.0:
            raise KubeError(0, "WatchClosed", "the watch ended immediately")
        return version

    def _apply(self, event: JSON) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(str(obj.get("message")))
            raise KubeError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.items[ref_of(obj, self.kind)] = obj
            self.on_change()
        elif kind == "DELETED":
            self.items.pop(ref_of(obj, self.kind), None)
            self.on_change()
        return str(version) if version else None

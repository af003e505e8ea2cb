"""Test-only controls (never part of the API): seed, compact, bookmark, drop watches, inject
errors, outages, the request log and settings. These run on the server's event loop; the HTTP
routes under ``/_test/`` and the in-process :class:`FakeApiServer` methods both call them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from tests.support.fake_apiserver.errors import bad_request
from tests.support.fake_apiserver.faults import Faults
from tests.support.fake_apiserver.registry import Registry, typed
from tests.support.fake_apiserver.resources import by_kind
from tests.support.fake_apiserver.store import Signal, Store

JSON = dict[str, Any]


@dataclass
class Settings:
    watch_timeout: float = 1800.0
    """Server-side watch timeout when the client sends no ``timeoutSeconds``."""
    bookmark_interval: float = 60.0
    expired_as_http: bool = False
    """Answer a too-old watch with HTTP 410 instead of 200 + an ERROR event."""
    too_large_rv_wait: float = 3.0
    """How long a list waits for a resourceVersion newer than the counter before 504."""


class Hooks:
    def __init__(self, store: Store, registry: Registry, faults: Faults, settings: Settings):
        self.store = store
        self.registry = registry
        self.faults = faults
        self.settings = settings
        self.refuse: Callable[[bool], None] = lambda refusing: None
        """Set by the server: stop (True) or resume (False) accepting connections."""
        self._outage_timer: asyncio.TimerHandle | None = None

    def seed(self, objects: list[JSON]) -> list[JSON]:
        stored = []
        for obj in objects:
            resource = by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
            if resource is None:
                raise bad_request(f"cannot seed {obj.get('apiVersion')}/{obj.get('kind')}")
            stored.append(typed(resource, self.registry.seed(resource, obj)))
        return stored

    def compact(self) -> int:
        self.store.compact()
        return self.store.rv

    def bookmark(self) -> int:
        return self.store.signal(Signal.BOOKMARK)

    def drop_watches(self, abort: bool = False) -> int:
        """End every open watch: cleanly (as a restarting apiserver does) or by cutting the
        connection mid-stream (``abort``)."""
        return self.store.signal(Signal.ABORT if abort else Signal.DROP)

    def inject(self, status: int, count: int = 1, path_prefix: str = "",
               retry_after: int = 1) -> None:
        try:
            self.faults.inject(status, count, path_prefix, retry_after)
        except ValueError as exc:
            raise bad_request(str(exc)) from None

    def outage(self, mode: str, duration: float | None = None) -> None:
        """``refuse``: connections are refused; ``503``: every API request gets 503;
        ``off``: back to normal. ``duration`` ends the outage by itself, which is the only way
        to end a ``refuse`` outage over HTTP."""
        if mode not in ("refuse", "503", "off"):
            raise bad_request(f"unknown outage mode {mode!r}")
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        self.faults.unavailable = mode == "503"
        self.refuse(mode == "refuse")
        if mode != "off" and duration is not None:
            loop = asyncio.get_running_loop()
            self._outage_timer = loop.call_later(duration, self.outage, "off")

    def requests(self, clear: bool = False) -> list[JSON]:
        log = list(self.faults.requests)
        if clear:
            self.faults.requests.clear()
        return log

    def configure(self, **values: Any) -> JSON:
        known = {f.name for f in fields(Settings)}
        for key, value in values.items():
            if key not in known:
                raise bad_request(f"unknown setting {key!r}")
            setattr(self.settings, key, value)
        return {f.name: getattr(self.settings, f.name) for f in fields(Settings)}

    def state(self) -> JSON:
        return {"resourceVersion": str(self.store.rv),
                "compactedResourceVersion": str(self.store.compacted_rv),
                "watches": self.store.watch_count}

    def reset_faults(self) -> None:
        self.outage("off")
        self.faults.clear()

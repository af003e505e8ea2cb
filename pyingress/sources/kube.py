"""The Kubernetes source: list, then watch, every kind routing needs, into the store.

Each kind has its own reflector loop: a list replaces that kind's objects in the store (objects
that vanished are deleted), then a watch applies every change from the list's resourceVersion
on. A watch that ends resumes from the last version it saw (bookmarks keep that fresh); a 410
(HTTP or in-stream) means the history is gone, so the kind is listed again. Errors back off with
jitter, and while the API server is away the store keeps its last state, so the proxy keeps
serving what it had.

Secrets are the exception to "keep everything": only Secrets that some Ingress references (TLS
``secretName``, an ``*/auth-secret`` or ``*/auth-tls-secret`` annotation) and the
``extra_secrets`` the caller names (the default certificate, the ACME challenge Secret) are
kept. Others are dropped on arrival and fetched when an Ingress starts to reference them. Their
contents are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyingress.model import KubeObject, ObjectRef, ref_of
from pyingress.sources.kubeclient import JSON, Backoff, KubeApi, KubeError
from pyingress.sources.store import ObjectStore

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300
"""Server-side ``timeoutSeconds`` of one watch (jittered); the watch then resumes."""

SECRET_ANNOTATION_SUFFIXES = ("/auth-secret", "/auth-tls-secret", "/oidc-secret")


@dataclass(frozen=True, slots=True)
class KindInfo:
    """Where one kind lives in the API."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True

    def collection_path(self, namespace: str | None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        return f"{self.collection_path(namespace if self.namespaced else None)}/{name}"


INGRESS = KindInfo("Ingress", "networking.k8s.io/v1", "ingresses")
INGRESS_CLASS = KindInfo("IngressClass", "networking.k8s.io/v1", "ingressclasses", namespaced=False)
SERVICE = KindInfo("Service", "v1", "services")
ENDPOINT_SLICE = KindInfo("EndpointSlice", "discovery.k8s.io/v1", "endpointslices")
SECRET = KindInfo("Secret", "v1", "secrets")
WATCHED_KINDS = (INGRESS, INGRESS_CLASS, SERVICE, ENDPOINT_SLICE, SECRET)


class Expired(Exception):
    """The watch's resourceVersion is older than the server's history: list again."""


def referenced_secrets(ingresses: Iterable[KubeObject]) -> set[ObjectRef]:
    """The Secrets the given Ingresses name, as references in the Ingress's namespace."""
    refs: set[ObjectRef] = set()
    for ingress in ingresses:
        meta = ingress.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        for tls in (ingress.get("spec") or {}).get("tls") or []:
            name = (tls or {}).get("secretName")
            if name:
                refs.add(ObjectRef("Secret", namespace, str(name)))
        for key, value in (meta.get("annotations") or {}).items():
            if str(key).endswith(SECRET_ANNOTATION_SUFFIXES) and value:
                refs.add(secret_ref(str(value), namespace))
    return refs


def secret_ref(value: str, namespace: str) -> ObjectRef:
    """``name`` or ``namespace/name`` as a Secret reference."""
    ns, _, name = value.strip().rpartition("/")
    return ObjectRef("Secret", ns or namespace, name)


class KubeSource:
    """Feeds an :class:`ObjectStore` from the API server until cancelled.

    ``synced`` is set once every kind has been listed completely, so readiness can wait for a
    full picture instead of serving 404s for Ingresses not yet seen.
    """

    def __init__(
        self,
        api: KubeApi,
        store: ObjectStore,
        namespace: str | None = None,
        extra_secrets: Iterable[ObjectRef] = (),
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        self.api = api
        self.store = store
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self.synced = asyncio.Event()
        self._listed: set[str] = set()
        self._versions: dict[str, str] = {}
        """Per kind, the resourceVersion to resume watching from; absent means list first."""
        self._ingresses_listed = asyncio.Event()
        self._extra_secrets = frozenset(extra_secrets)
        self._wanted_secrets: set[ObjectRef] = set(self._extra_secrets)
        self._secret_events: dict[ObjectRef, int] = {}
        self._fetches: dict[ObjectRef, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Reflect every kind until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                for info in WATCHED_KINDS:
                    group.create_task(self._reflect(info), name=f"reflect-{info.kind}")
        finally:
            for task in self._fetches.values():
                task.cancel()

    async def list_all(self) -> None:
        """List every kind once, without watching: a one-shot picture (``check``, ``routes``).

        Raises :class:`KubeError` on the first failure; Ingresses come before Secrets, so
        only referenced Secrets are kept.
        """
        for info in WATCHED_KINDS:
            await self._list(info)

    # -- one kind ---------------------------------------------------------------------------

    async def _reflect(self, info: KindInfo) -> None:
        if info is SECRET:
            # Which Secrets to keep is only known once the Ingresses are.
            await self._ingresses_listed.wait()
        backoff = Backoff()
        self._versions.pop(info.kind, None)
        expired_in_a_row = 0
        while True:
            try:
                if info.kind not in self._versions:
                    self._versions[info.kind] = await self._list(info)
                    backoff.reset()
                await self._watch(info)
                backoff.reset()
                expired_in_a_row = 0
            except (Expired, KubeError) as exc:
                if isinstance(exc, Expired) or exc.status == 410:
                    log.info("%s watch expired (410); listing again", info.kind)
                    self._versions.pop(info.kind, None)
                    expired_in_a_row += 1
                    if expired_in_a_row > 1:  # a server that keeps expiring: do not spin
                        await asyncio.sleep(backoff.next_delay())
                    continue
                delay = backoff.next_delay(exc.retry_after)
                log.warning("%s: %s; retrying in %.1fs", info.kind, exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a bad response or a bug: never stop reflecting
                delay = backoff.next_delay()
                log.warning("%s: unexpected %r; retrying in %.1fs", info.kind, exc, delay)
                await asyncio.sleep(delay)

    def _scope(self, info: KindInfo) -> str | None:
        return self.namespace if info.namespaced else None

    async def _list(self, info: KindInfo) -> str:
        body = await self.api.request("GET", info.collection_path(self._scope(info)))
        items = [self._with_kind(info, item) for item in body.get("items") or []]
        self._replace(info, items)
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if info.kind not in self._listed:
            self._listed.add(info.kind)
            log.info("listed %d %s object(s)", len(items), info.kind)
            if info is INGRESS:
                self._ingresses_listed.set()
            if len(self._listed) == len(WATCHED_KINDS):
                self.synced.set()
        return version

    async def _watch(self, info: KindInfo) -> None:
        """Apply events until the server ends the watch, remembering the last version seen
        (even when the stream then breaks, so the next watch resumes right there)."""
        timeout = int(self.watch_timeout * random.uniform(1.0, 1.2))
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._versions[info.kind],
            "timeoutSeconds": str(timeout),
        }
        stream = self.api.watch(info.collection_path(self._scope(info)), query, timeout + 30)
        started, events = time.monotonic(), 0
        async for event in stream:
            events += 1
            version = self._apply_event(info, event)
            if version:
                self._versions[info.kind] = version
        if not events and time.monotonic() - started < 1.0:
            # A server that ends every watch at once must not turn this loop into a spin.
            raise KubeError(0, "WatchClosed", "the watch ended immediately")

    def _apply_event(self, info: KindInfo, event: JSON) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(obj.get("message"))
            code = int(obj.get("code") or 500)
            raise KubeError(code, str(obj.get("reason")), str(obj.get("message")))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self._upsert(info, [self._with_kind(info, obj)])
        elif kind == "DELETED":
            self._delete(info, [ref_of(obj, info.kind)])
        return str(version) if version else None

    # -- the store --------------------------------------------------------------------------

    @staticmethod
    def _with_kind(info: KindInfo, obj: Mapping[str, Any]) -> JSON:
        """List items come without ``kind``/``apiVersion``; give them back, as manifests have."""
        return {**obj, "kind": info.kind, "apiVersion": info.api_version}

    def _replace(self, info: KindInfo, items: list[JSON]) -> None:
        if info is SECRET:
            self._secret_events = {ref: n + 1 for ref, n in self._secret_events.items()}
            items = [item for item in items if ref_of(item, "Secret") in self._wanted_secrets]
        fresh = {ref_of(item, info.kind) for item in items}
        gone = self.store.refs(info.kind) - fresh
        self.store.update(items, gone)
        if info is INGRESS:
            self._reconsider_secrets()

    def _upsert(self, info: KindInfo, items: list[JSON]) -> None:
        if info is SECRET:
            for item in items:
                ref = ref_of(item, "Secret")
                self._secret_events[ref] = self._secret_events.get(ref, 0) + 1
                if ref in self._wanted_secrets:
                    self.store.update([item])
            return
        self.store.update(items)
        if info is INGRESS:
            self._reconsider_secrets()

    def _delete(self, info: KindInfo, refs: list[ObjectRef]) -> None:
        if info is SECRET:
            for ref in refs:
                self._secret_events[ref] = self._secret_events.get(ref, 0) + 1
        self.store.update((), refs)
        if info is INGRESS:
            self._reconsider_secrets()

    # -- referenced Secrets -----------------------------------------------------------------

    def _reconsider_secrets(self) -> None:
        """Drop Secrets no Ingress references any more; fetch newly referenced ones."""
        ingresses = [self.store.get(ref) for ref in self.store.refs("Ingress")]
        wanted = referenced_secrets(obj for obj in ingresses if obj is not None)
        wanted |= self._extra_secrets
        if self.namespace is not None:
            wanted = {ref for ref in wanted if ref.namespace == self.namespace}
        added = wanted - self._wanted_secrets
        removed = self._wanted_secrets - wanted
        self._wanted_secrets = wanted
        if removed:
            self.store.update((), removed)
            for ref in removed:
                task = self._fetches.pop(ref, None)
                if task is not None:
                    task.cancel()
        if "Secret" not in self._listed:
            return  # the first Secret list will bring them
        for ref in added:
            if ref not in self._fetches:
                self._fetches[ref] = asyncio.create_task(self._fetch_secret(ref))

    async def _fetch_secret(self, ref: ObjectRef) -> None:
        """GET one newly referenced Secret, unless a watch event got there first."""
        backoff = Backoff()
        try:
            while ref in self._wanted_secrets:
                seen = self._secret_events.get(ref, 0)
                try:
                    obj = await self.api.request("GET", SECRET.object_path(ref.namespace, ref.name))
                except KubeError as exc:
                    if exc.status == 404:
                        return
                    await asyncio.sleep(backoff.next_delay(exc.retry_after))
                    continue
                if ref in self._wanted_secrets and self._secret_events.get(ref, 0) == seen:
                    self.store.update([self._with_kind(SECRET, obj)])
                return
        finally:
            if self._fetches.get(ref) is asyncio.current_task():
                del self._fetches[ref]

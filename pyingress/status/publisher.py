"""The elected replica writes the published address into served Ingresses' status.

Tools such as Argo CD call an Ingress healthy only once ``status.loadBalancer.ingress`` is set.
The address comes from ``--publish-address`` or from the LoadBalancer status of
``--publish-service``. Only Ingresses this controller owns (by IngressClass) are written, and
only when the value differs, so a steady state costs no API writes at all. The diff logic is
pure (:func:`desired_entries`, :func:`status_updates`) and the loop only applies its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pyingress.model import KubeObject, ObjectRef, ref_of
from pyingress.routing.classes import ClassOptions, our_classes, owns_ingress
from pyingress.sources.kubeclient import JSON, KubeApi, KubeError
from pyingress.sources.store import ObjectStore

log = logging.getLogger(__name__)

Entry = dict[str, Any]

RESYNC_INTERVAL = 60.0
"""Also re-check every so often, to repair status that someone else overwrote."""

RETRY_DELAY = 1.0
"""After a failed write, try again this much later."""


def address_entry(value: str) -> Entry:
    """``{"ip": ...}`` for an IP address, ``{"hostname": ...}`` for anything else."""
    try:
        return {"ip": str(ipaddress.ip_address(value.strip()))}
    except ValueError:
        return {"hostname": value.strip().lower()}


def _entry_key(entry: Entry) -> tuple[str, str]:
    return (str(entry.get("ip") or ""), str(entry.get("hostname") or ""))


def normalize_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted, de-duplicated ``ip``/``hostname`` entries (``ports`` are not ours to set)."""
    keys = {_entry_key(e) for e in entries if e.get("ip") or e.get("hostname")}
    return [{"ip": ip} if ip else {"hostname": host} for ip, host in sorted(keys)]


def service_entries(service: KubeObject | None) -> list[Entry]:
    """The published entries of a Service: its load-balancer status, else its external IPs."""
    if service is None:
        return []
    lb = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if lb:
        return normalize_entries(lb)
    external = (service.get("spec") or {}).get("externalIPs") or []
    return normalize_entries(address_entry(str(ip)) for ip in external)


def desired_entries(addresses: Sequence[str], service: KubeObject | None) -> list[Entry]:
    """What every served Ingress's ``status.loadBalancer.ingress`` should say."""
    if addresses:
        return normalize_entries(address_entry(a) for a in addresses if a.strip())
    return service_entries(service)


def current_entries(ingress: KubeObject) -> list[Entry]:
    lb = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return normalize_entries(lb)


def status_updates(
    ingresses: Iterable[KubeObject],
    ingress_classes: Sequence[KubeObject],
    options: ClassOptions,
    desired: list[Entry],
) -> list[ObjectRef]:
    """The served Ingresses whose status differs from ``desired``.

    Ingresses of another class, or naming a class that does not exist, are never included.
    """
    classes = our_classes(ingress_classes, options)
    return [
        ref_of(ingress, "Ingress")
        for ingress in ingresses
        if owns_ingress(ingress, classes, options) and current_entries(ingress) != desired
    ]


def status_patch(desired: list[Entry]) -> JSON:
    return {"status": {"loadBalancer": {"ingress": desired}}}


class StatusPublisher:
    """Keeps served Ingresses' status in line with the published address while leading."""

    def __init__(
        self,
        api: KubeApi,
        store: ObjectStore,
        options: ClassOptions,
        is_leader: Callable[[], bool],
        *,
        addresses: Sequence[str] = (),
        service: ObjectRef | None = None,
        resync_interval: float = RESYNC_INTERVAL,
    ) -> None:
        self.api = api
        self.store = store
        self.options = options
        self.is_leader = is_leader
        self.addresses = list(addresses)
        self.service = service
        self.resync_interval = resync_interval
        self.writes = 0
        self._wake = asyncio.Event()
        self._written: dict[ObjectRef, tuple[str, str]] = {}
        """What we last wrote per Ingress, and the resourceVersion it was written over, so a
        sync that runs before our own write comes back through the watch does not repeat it."""
        store.subscribe(self.notify)

    def notify(self, *_: object) -> None:
        """Ask for a sync soon (store changed, or leadership changed)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_interval)
            self._wake.clear()
            if self.is_leader():
                await self.sync()
            else:
                self._written.clear()

    async def _service(self) -> KubeObject | None:
        if self.service is None:
            return None
        cached = self.store.get(self.service)
        if cached is not None:
            return cached
        path = f"/api/v1/namespaces/{self.service.namespace}/services/{self.service.name}"
        try:  # outside the watched namespace: read it directly
            return await self.api.request("GET", path)
        except KubeError as exc:
            log.warning("cannot read publish service %s: %s", self.service.namespaced_name, exc)
            return None

    async def sync(self) -> int:
        """Write every served Ingress whose status differs; returns the number written."""
        desired = desired_entries(self.addresses, await self._service())
        snapshot = self.store.snapshot()
        refs = status_updates(
            snapshot.of_kind("Ingress"), snapshot.of_kind("IngressClass"), self.options, desired
        )
        mark = repr(desired)
        written = 0
        for ref in refs:
            obj = self.store.get(ref)
            version = str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))
            if self._written.get(ref) == (mark, version):
                continue
            if not self.is_leader():
                return written  # leadership lost mid-way: stop at once
            if await self._write(ref, desired):
                self._written[ref] = (mark, version)
                written += 1
        return written

    async def _write(self, ref: ObjectRef, desired: list[Entry]) -> bool:
        path = f"/apis/networking.k8s.io/v1/namespaces/{ref.namespace}/ingresses/{ref.name}/status"
        try:
            await self.api.request(
                "PATCH", path, body=status_patch(desired),
                content_type="application/merge-patch+json",
            )  # fmt: skip
        except KubeError as exc:
            if exc.status != 404:  # a deleted Ingress needs no status
                log.warning("cannot update status of %s: %s; retrying", ref, exc)
                asyncio.get_running_loop().call_later(RETRY_DELAY, self._wake.set)
            return False
        self.writes += 1
        shown = ",".join(e.get("ip") or e.get("hostname", "") for e in desired) or "(none)"
        log.info("status of %s set to %s", ref, shown)
        return True

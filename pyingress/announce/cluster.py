"""Cluster mode: allocate pool addresses to Services, elect a node per address, announce it.

Every announcer reflects Services and EndpointSlices. The one holding the
``pyingress-announce-allocator`` Lease runs :func:`allocation.allocate` and writes the result to
``status.loadBalancer.ingress``, so two announcers never write different assignments. Every
announcer then stands, per address found in those statuses, for that address's Lease; the
winner probes, answers ARP and sends gratuitous ARP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Iterable

from pyingress.announce import allocation
from pyingress.announce.frames import ArpFrame, format_mac
from pyingress.announce.garp import GarpSettings
from pyingress.announce.metrics import HealthServer
from pyingress.announce.pool import Pool
from pyingress.announce.probe import ProbeSettings
from pyingress.announce.reflector import Reflector
from pyingress.announce.responder import Responder
from pyingress.announce.speaker import Speaker
from pyingress.cli import StartupError
from pyingress.lease import LeaseElector, LeaseTiming, micro_time
from pyingress.model import ObjectRef, Problem
from pyingress.sources.kubeclient import JSON, KubeApi, KubeError, new_api_client

log = logging.getLogger("pyingress.announce")

IPv4 = ipaddress.IPv4Address
ALLOCATOR_LEASE = "pyingress-announce-allocator"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def lease_name(ip: object) -> str:
    """The per-address Lease: ``10.0.0.1`` stands for ``pyingress-announce-10-0-0-1``."""
    return "pyingress-announce-" + str(ip).replace(".", "-").replace(":", "-")


class Cluster:
    def __init__(
        self, args: argparse.Namespace, api: KubeApi, pool: Pool, speaker: Speaker
    ) -> None:
        self.api = api
        self.pool = pool
        self.speaker = speaker
        self.node = str(args.node_name)
        self.namespace = str(args.lease_namespace)
        self.ignore_classless = bool(args.ignore_classless)
        try:
            self.timing = LeaseTiming(args.lease_duration, args.renew_period, args.retry_period)
        except ValueError:
            raise StartupError(
                "--renew-period must stay below half of --lease-duration, and every period above 0"
            ) from None
        self.ready_url: str | None = args.require_ready_url
        self.proxy_ready = self.ready_url is None
        self.dirty = asyncio.Event()
        self.services = Reflector(api, "/api/v1/services", "Service", self.dirty.set)
        self.slices = Reflector(
            api, "/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice", self.dirty.set
        )
        self.allocator = LeaseElector(
            api, self.namespace, ALLOCATOR_LEASE, self.node, self.timing,
            lambda leading: self.dirty.set(),
        )  # fmt: skip
        self.electors: dict[IPv4, tuple[LeaseElector, asyncio.Task[None]]] = {}
        self._reported: set[Problem] = set()
        speaker.on_conflict = self._conflict

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.services.run())
                group.create_task(self.slices.run())
                group.create_task(self.allocator.run())
                if self.ready_url:
                    group.create_task(self._watch_readiness())
                group.create_task(self._reconcile_loop())
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self.speaker.release_all()
        for ip in list(self.electors):
            await self._drop(ip)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.allocator.release(), 2)

    async def _reconcile_loop(self) -> None:
        await self.services.listed.wait()
        await self.slices.listed.wait()
        while True:
            self.dirty.clear()
            try:
                if self.allocator.is_leader:
                    await self._allocate()
                await self._elect()
            except KubeError as exc:
                log.warning("reconcile: %s", exc)
                await asyncio.sleep(self.timing.retry)
                self.dirty.set()
            await self.dirty.wait()

    # -- allocation (allocator leader only) --------------------------------------------------

    async def _allocate(self) -> None:
        objects = list(self.services.items.values())
        views = [allocation.view_of(obj, self.ignore_classless) for obj in objects]
        result = allocation.allocate(views, self.pool)
        self._report(result.problems)
        for obj, view in zip(objects, views, strict=True):
            current = [str(ip) for ip in view.current]
            if view.ours:
                desired = [str(ip) for ip in result.assignments.get(view.ref, ())]
            elif obj.get("spec", {}).get("type") != "LoadBalancer" and any(
                ip in self.pool for ip in view.current
            ):
                desired = []  # no longer a LoadBalancer: give its address back
            else:
                continue
            if desired != current:
                await self._write_status(view.ref, desired)

    async def _write_status(self, ref: ObjectRef, ips: list[str]) -> None:
        path = f"/api/v1/namespaces/{ref.namespace}/services/{ref.name}/status"
        body = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
        try:
            await self.api.request(
                "PATCH", path, body=body, content_type="application/merge-patch+json"
            )
        except KubeError as exc:
            if exc.status == 404:
                return  # deleted meanwhile; the watch will tell
            raise
        log.info("%s: load balancer address %s", ref, ", ".join(ips) or "released")
        if ips:
            await self.event(ref, "Normal", "IPAllocated", f"Assigned IP {', '.join(ips)}")

    def _report(self, problems: Iterable[Problem]) -> None:
        fresh = set(problems)
        for problem in fresh - self._reported:
            log.warning("%s", problem)
            asyncio.get_running_loop().create_task(
                self.event(problem.ref, "Warning", problem.reason, problem.message)
            )
        self._reported = fresh

    # -- election and announcing (every announcer) ------------------------------------------

    def _addresses(self) -> dict[IPv4, list[JSON]]:
        """Pool addresses in the status of our Services, with the Services using each."""
        out: dict[IPv4, list[JSON]] = {}
        for obj in self.services.items.values():
            view = allocation.view_of(obj, self.ignore_classless)
            if not view.ours:
                continue
            for ip in view.current:
                if ip in self.pool:
                    out.setdefault(ip, []).append(obj)
        return out

    async def _elect(self) -> None:
        wanted = self._addresses()
        for ip in list(self.electors):
            if ip not in wanted:
                await self._drop(ip)
        for ip, services in wanted.items():
            candidate = self.proxy_ready and all(self._has_local_endpoint(s) for s in services)
            if ip not in self.electors:
                elector = LeaseElector(
                    self.api, self.namespace, lease_name(ip), self.node, self.timing,
                    functools.partial(self._leadership, ip),
                )  # fmt: skip
                elector.set_candidate(candidate)
                task = asyncio.get_running_loop().create_task(elector.run())
                self.electors[ip] = (elector, task)
            else:
                self.electors[ip][0].set_candidate(candidate)

    async def _drop(self, ip: IPv4) -> None:
        elector, task = self.electors.pop(ip)
        self.speaker.release(ip)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(elector.release(), 2)

    def _leadership(self, ip: IPv4, leading: bool) -> None:
        if leading:
            self.speaker.take(ip)
        else:
            self.speaker.release(ip)

    def _has_local_endpoint(self, service: JSON) -> bool:
        """For ``externalTrafficPolicy: Local`` only nodes with a ready endpoint may announce."""
        if (service.get("spec") or {}).get("externalTrafficPolicy") != "Local":
            return True
        meta = service.get("metadata") or {}
        for ref, eps in self.slices.items.items():
            labels = (eps.get("metadata") or {}).get("labels") or {}
            if ref.namespace != meta.get("namespace") or labels.get(SERVICE_NAME_LABEL) != meta.get(
                "name"
            ):
                continue
            for endpoint in eps.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready")
                if endpoint.get("nodeName") == self.node and ready is not False:
                    return True
        return False

    async def _watch_readiness(self) -> None:
        """Poll the local proxy's readiness URL; only a ready node stands for election."""
        assert self.ready_url is not None
        while True:
            ready = await _url_ok(self.ready_url, timeout=max(self.timing.retry, 0.5))
            if ready != self.proxy_ready:
                log.info("local proxy %s", "ready" if ready else "not ready: standing down")
                self.proxy_ready = ready
                self.dirty.set()
            await asyncio.sleep(self.timing.retry)

    # -- reporting ---------------------------------------------------------------------------

    def _conflict(self, ip: IPv4, frame: ArpFrame) -> None:
        message = f"address {ip} is already in use by {format_mac(frame.sha)} on the network"
        for service in self._addresses().get(ip, []):
            meta = service.get("metadata") or {}
            ref = ObjectRef("Service", str(meta.get("namespace")), str(meta.get("name")))
            asyncio.get_running_loop().create_task(
                self.event(ref, "Warning", "AddressConflict", message)
            )

    async def event(self, ref: ObjectRef, kind: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the object; failures are logged, never fatal."""
        now = micro_time()
        stamp = now[:19] + "Z"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.name}.{time.time_ns():x}",
                "namespace": ref.namespace,
            },
            "involvedObject": {
                "apiVersion": "v1", "kind": ref.kind, "namespace": ref.namespace, "name": ref.name,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "pyingress-announcer", "host": self.node},
            "reportingComponent": "pyingress.io/announcer",
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }  # fmt: skip
        try:
            await self.api.request("POST", f"/api/v1/namespaces/{ref.namespace}/events", body=body)
        except KubeError as exc:
            log.debug("event for %s not recorded: %s", ref, exc)


async def _url_ok(url: str, timeout: float) -> bool:
    """A bare HTTP/1.1 GET; 2xx means ready. Plain http only: it is a node-local probe."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        fields = line.split()
        return len(fields) >= 2 and fields[1].startswith(b"2")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run_cluster(
    args: argparse.Namespace,
    pool: Pool,
    responder: Responder,
    probe_settings: ProbeSettings,
    garp_settings: GarpSettings,
    health: HealthServer,
) -> None:
    try:
        client = await new_api_client(args.kubeconfig, args.in_cluster)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    api = KubeApi(client)
    speaker = Speaker(responder, probe_settings, garp_settings, args.conflict_retry)
    log.info("cluster mode on %s as node %s, pool of %d", args.interface, args.node_name, len(pool))
    try:
        await Cluster(args, api, pool, speaker).run()
    finally:
        await api.close()

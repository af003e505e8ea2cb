"""Cluster mode for ``serve``: the Kubernetes source plus what only a cluster has.

Besides feeding the store (:class:`~pyingress.sources.kube.KubeSource`), a replica in a cluster
campaigns for the status Lease; the elected one writes Ingress status and records Events for
compile problems. :class:`ClusterSource` bundles these behind the same ``run``/``stop``/
``synced`` shape as the manifests source, so ``serve`` stays source-agnostic.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyingress.model import ObjectRef, Problem
from pyingress.routing.compiler import CompileOptions
from pyingress.sources.kube import KubeSource
from pyingress.sources.kubeclient import KubeApi, KubeError, new_api_client, pod_namespace
from pyingress.sources.store import ObjectStore

log = logging.getLogger(__name__)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value} must be above 0 and at most 3600 seconds")
    return value


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of cluster mode (``--kubeconfig`` / ``--in-cluster``): status and election."""
    add = parser.add_argument
    add("--update-status", action=argparse.BooleanOptionalAction, default=True,
        help="let the elected replica write served Ingresses' status (default: on)")
    add("--election-id", default="pyingress-leader", metavar="NAME",
        help="name of the Lease replicas elect the status writer with (default: %(default)s)")
    add("--election-namespace", default=None, metavar="NS",
        help="namespace of that Lease (default: $POD_NAMESPACE, else 'default')")
    add("--election-lease-duration", type=_seconds, default=15.0, metavar="SECONDS",
        help="how long a leader's Lease lasts without renewal (default: %(default)s)")
    add("--election-renew-deadline", type=_seconds, default=10.0, metavar="SECONDS",
        help="a leader that cannot renew for this long stops writing (default: %(default)s)")
    add("--election-retry-period", type=_seconds, default=2.0, metavar="SECONDS",
        help="how often candidates try and leaders renew (default: %(default)s)")
    add("--event-interval", type=_seconds, default=60.0, metavar="SECONDS",
        help="bump a repeated Event's count at most this often (default: %(default)s)")


@dataclass
class ClusterSettings:
    kubeconfig: str | None = None
    in_cluster: bool = False
    options: CompileOptions = field(default_factory=CompileOptions)
    update_status: bool = True
    publish_addresses: list[str] = field(default_factory=list)
    publish_service: ObjectRef | None = None
    default_certificate: ObjectRef | None = None
    election_id: str = "pyingress-leader"
    election_namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    event_interval: float = 60.0

    @classmethod
    def from_args(cls, args: argparse.Namespace, options: CompileOptions) -> ClusterSettings:
        def ref(kind: str, value: str | None) -> ObjectRef | None:
            if not value:
                return None
            namespace, _, name = value.partition("/")
            return ObjectRef(kind, namespace, name)

        addresses = [a.strip() for a in (getattr(args, "publish_address", None) or "").split(",")]
        settings = cls(
            kubeconfig=args.kubeconfig,
            in_cluster=bool(args.in_cluster),
            options=options,
            update_status=getattr(args, "update_status", True),
            publish_addresses=[a for a in addresses if a],
            publish_service=ref("Service", getattr(args, "publish_service", None)),
            default_certificate=ref("Secret", getattr(args, "default_ssl_certificate", None)),
            election_id=getattr(args, "election_id", "pyingress-leader"),
            election_namespace=getattr(args, "election_namespace", None) or pod_namespace(),
            lease_duration=getattr(args, "election_lease_duration", 15.0),
            renew_deadline=getattr(args, "election_renew_deadline", 10.0),
            retry_period=getattr(args, "election_retry_period", 2.0),
            event_interval=getattr(args, "event_interval", 60.0),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Fail before serving on settings that cannot work (a ValueError with the reason)."""
        if not self.lease_duration > self.renew_deadline > self.retry_period:
            raise ValueError(
                "need --election-lease-duration > --election-renew-deadline > "
                "--election-retry-period"
            )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._probe_config()).result()

    async def _probe_config(self) -> None:
        client = await new_api_client(self.kubeconfig, self.in_cluster)
        await client.close()


class ClusterSource:
    """Watches the cluster into the store; while elected, writes status and Events."""

    def __init__(self, settings: ClusterSettings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.synced = asyncio.Event()
        host = os.environ.get("POD_NAME") or os.uname().nodename
        self.identity = f"{host}-{secrets.token_hex(3)}"
        self.elector: Any = None
        self.publisher: Any = None
        self.events: Any = None
        self._task: asyncio.Task[None] | None = None
        self._pending_problems: list[Problem] | None = None

    def observe_problems(self, problems: Iterable[Problem]) -> None:
        """The reconciler's ``on_problems`` hook: compile problems become Events."""
        if self.events is not None:
            self.events.observe(problems)
        else:
            self._pending_problems = list(problems)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        s = self.settings
        api = KubeApi(await new_api_client(s.kubeconfig, s.in_cluster))
        extra = [s.default_certificate] if s.default_certificate else []
        kube = KubeSource(api, self.store, s.options.namespace, extra_secrets=extra)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(kube.run(), name="kube-source")
                group.create_task(self._forward_synced(kube), name="kube-synced")
                if s.update_status:
                    self._start_status(api, group)
        finally:
            await self._release()
            await api.close()

    def _start_status(self, api: KubeApi, group: asyncio.TaskGroup) -> None:
        from pyingress.status.events import EventRecorder
        from pyingress.status.leader import LeaderElector
        from pyingress.status.publisher import StatusPublisher

        s = self.settings
        self.elector = elector = LeaderElector(
            api, s.election_namespace, s.election_id, self.identity,
            lease_duration=s.lease_duration, renew_deadline=s.renew_deadline,
            retry_period=s.retry_period,
        )  # fmt: skip
        self.publisher = publisher = StatusPublisher(
            api, self.store, s.options, lambda: elector.is_leader,
            addresses=s.publish_addresses, service=s.publish_service,
        )  # fmt: skip
        elector.subscribe(publisher.notify)
        self.events = EventRecorder(
            api, self.store.get, interval=s.event_interval, active=lambda: elector.is_leader
        )
        elector.subscribe(self.events.notify)
        if self._pending_problems is not None:
            self.events.observe(self._pending_problems)
        group.create_task(elector.run(), name="leader-election")
        group.create_task(publisher.run(), name="status-publisher")
        group.create_task(self.events.run(), name="event-recorder")

    async def _forward_synced(self, kube: KubeSource) -> None:
        await kube.synced.wait()
        self.synced.set()

    async def _release(self) -> None:
        if self.elector is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.elector.release())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def load_cluster(args: argparse.Namespace, options: CompileOptions) -> ObjectStore:
    """Every object routing needs, listed once from the cluster the flags name.

    Raises ``ValueError`` with a one-line reason when the cluster cannot be read.
    """
    settings = ClusterSettings.from_args(args, options)
    store = ObjectStore()

    async def list_once() -> None:
        api = KubeApi(await new_api_client(settings.kubeconfig, settings.in_cluster))
        try:
            extra = [settings.default_certificate] if settings.default_certificate else []
            await KubeSource(api, store, options.namespace, extra_secrets=extra).list_all()
        except KubeError as exc:
            raise ValueError(f"cannot read the cluster: {exc}") from None
        finally:
            await api.close()

    asyncio.run(list_once())
    return store

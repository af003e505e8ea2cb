"""Cluster mode for ``serve``: the Kubernetes source plus what only a cluster has.

Besides feeding the store (:class:`~pyingress.sources.kube.KubeSource`), a replica in a cluster
campaigns for the status Lease; the elected one writes Ingress status and records Events for
compile problems. :class:`ClusterSource` bundles these behind the same ``run``/``stop``/
``synced`` shape as the manifests source, so ``serve`` stays source-agnostic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Iterable
from typing import Any

from pyingress.model import ObjectRef, Problem
from pyingress.routing.compiler import CompileOptions
from pyingress.sources.clustersettings import ClusterSettings, add_cluster_arguments
from pyingress.sources.kube import KubeSource
from pyingress.sources.kubeclient import KubeApi, KubeError, new_api_client
from pyingress.sources.store import ObjectStore
from pyingress.tls.acme.challenges import challenge_secret

__all__ = ["ClusterSettings", "ClusterSource", "add_cluster_arguments", "load_cluster"]

log = logging.getLogger(__name__)


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
        self._api: KubeApi | None = None

    @property
    def api(self) -> KubeApi | None:
        """The API client, once :meth:`run` has started (TLS writes ACME Secrets with it)."""
        return self._api

    @property
    def challenge_secret(self) -> ObjectRef:
        """The Secret the ACME leader publishes HTTP-01 tokens in, kept by every replica's
        source although no Ingress names it: the election namespace, or the one namespace
        watched with ``--namespace`` (other Secrets are not seen then)."""
        s = self.settings
        return challenge_secret(s.options.namespace or s.election_namespace)

    @property
    def leadership(self) -> Any:
        """This replica's election (``is_leader``, ``subscribe``), or None when it does not
        campaign (``--no-update-status``). Work only one replica may do gates on it."""
        return self.elector

    def observe_problems(self, problems: Iterable[Problem]) -> None:
        """The reconciler's ``on_problems`` hook: compile problems become Events."""
        if self.events is not None:
            self.events.observe(problems)
        else:
            self._pending_problems = list(problems)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        s = self.settings
        api = self._api = KubeApi(await new_api_client(s.kubeconfig, s.in_cluster))
        extra = [s.default_certificate] if s.default_certificate else []
        extra.append(self.challenge_secret)
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

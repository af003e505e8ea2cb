"""Flags and settings of cluster mode, apart from the client code that uses them.

``serve`` defines these flags in every mode; keeping them here means the Kubernetes client
(``kubernetes_asyncio`` and ``aiohttp``, about 50 MB and a second of imports) is only loaded
when ``--kubeconfig`` or ``--in-cluster`` is actually given.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
from dataclasses import dataclass, field

from pyingress.commands.argtypes import positive_seconds
from pyingress.model import ObjectRef
from pyingress.routing.compiler import CompileOptions


def pod_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (downward API), or ``default`` outside a cluster."""
    return os.environ.get("POD_NAMESPACE") or default


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of cluster mode (``--kubeconfig`` / ``--in-cluster``): status and election."""
    add = parser.add_argument
    add(
        "--update-status",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let the elected replica write served Ingresses' status (default: on)",
    )
    add(
        "--election-id",
        default="pyingress-leader",
        metavar="NAME",
        help="name of the Lease replicas elect the status writer with (default: %(default)s)",
    )
    add(
        "--election-namespace",
        default=None,
        metavar="NS",
        help="namespace of that Lease (default: $POD_NAMESPACE, else 'default')",
    )
    add(
        "--election-lease-duration",
        type=positive_seconds,
        default=15.0,
        metavar="SECONDS",
        help="how long a leader's Lease lasts without renewal (default: %(default)s)",
    )
    add(
        "--election-renew-deadline",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="a leader that cannot renew for this long stops writing (default: %(default)s)",
    )
    add(
        "--election-retry-period",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="how often candidates try and leaders renew (default: %(default)s)",
    )
    add(
        "--event-interval",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="bump a repeated Event's count at most this often (default: %(default)s)",
    )


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
        from pyingress.sources.kubeclient import new_api_client  # only cluster mode pays for it

        client = await new_api_client(self.kubeconfig, self.in_cluster)
        await client.close()

"""Which ``serve`` replica writes Ingress status (and does other once-per-cluster work).

The election itself is :class:`pyingress.lease.LeaseElector`; this module only gives it the
status writer's name and client-go's timings, as the ``--election-*`` flags spell them. Gate
work on :attr:`LeaderElector.is_leader` (it checks the clock, so a leader that cannot renew
stops at once) and learn of changes with :meth:`LeaderElector.subscribe` or
:attr:`LeaderElector.changed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyingress.lease import LeaseElector, LeaseTiming, Listener
from pyingress.sources.kubeclient import KubeApi

__all__ = ["LeaderElector", "Listener"]


class LeaderElector(LeaseElector):
    """Campaigns for the status writer's Lease until cancelled; renews every retry period."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timing = LeaseTiming(
            duration=lease_duration,
            renew=retry_period,
            retry=retry_period,
            renew_deadline=renew_deadline,
        )
        super().__init__(api, namespace, name, identity, timing, clock=clock)

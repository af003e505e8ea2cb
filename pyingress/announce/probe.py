"""RFC 5227 conflict detection: ask, with sender IP 0.0.0.0, whether anyone already uses an address.

RFC 5227 waits 1-2 s between probes; a load-balancer address must move in well under that on
failover, so the defaults are three probes 100 ms apart, a 300 ms window. A host that owns the
address answers a probe in well under a millisecond on a LAN, so the short window still catches
a real owner; it only misses hosts that are too slow to answer ARP at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from pyingress.announce import frames
from pyingress.announce.frames import ArpFrame
from pyingress.announce.responder import Responder


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    count: int = 3
    interval: float = 0.1

    @property
    def window(self) -> float:
        return self.count * self.interval


async def probe(
    responder: Responder, ip: ipaddress.IPv4Address, settings: ProbeSettings
) -> ArpFrame | None:
    """Probe ``ip``; the first frame another host sent from it, or None if nobody answered."""
    if settings.count <= 0:
        return None
    found: asyncio.Future[ArpFrame] = asyncio.get_running_loop().create_future()

    def seen(frame: ArpFrame) -> None:
        if not found.done():
            found.set_result(frame)

    unwatch = responder.watch(ip, seen)
    try:
        for _ in range(settings.count):
            responder.send(frames.probe(ip, responder.mac))
            responder.metrics.probes_sent.labels(str(ip)).inc()
            try:
                return await asyncio.wait_for(asyncio.shield(found), settings.interval)
            except TimeoutError:
                continue
        return None
    finally:
        unwatch()

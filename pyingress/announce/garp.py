"""Gratuitous ARP on taking an address: what makes clients switch in a fraction of a second.

Each burst carries both forms Linux accepts as gratuitous even inside its 1 s ``locktime``: a
request with THA zero and a reply with THA equal to SHA. Bursts follow MetalLB's schedule (one
now, then every 1.1 s, five in all) so at least one lands after a client's locktime; an optional
refresh keeps re-sending while the address is held, for switches whose FDB ages out first.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from pyingress.announce import frames
from pyingress.announce.responder import Responder


@dataclass(frozen=True, slots=True)
class GarpSettings:
    bursts: int = 5
    interval: float = 1.1
    refresh: float = 0.0
    """Seconds between refresh bursts after the initial ones; 0 turns refreshing off."""


def send_burst(responder: Responder, ip: ipaddress.IPv4Address) -> None:
    for frame in (frames.garp_request(ip, responder.mac), frames.garp_reply(ip, responder.mac)):
        responder.send(frame)
        responder.metrics.gratuitous_sent.labels(str(ip)).inc()


async def garp_loop(
    responder: Responder, ip: ipaddress.IPv4Address, settings: GarpSettings
) -> None:
    """Run until cancelled (on release) or until the schedule ends without refresh."""
    for n in range(settings.bursts):
        if n:
            await asyncio.sleep(settings.interval)
        send_burst(responder, ip)
    while settings.refresh > 0:
        await asyncio.sleep(settings.refresh)
        send_burst(responder, ip)

"""Taking and releasing addresses: probe first, then answer and send gratuitous ARP.

Static mode and cluster mode both drive this one object; only who decides *which* addresses to
hold differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pyingress.announce.frames import ArpFrame, format_mac
from pyingress.announce.garp import GarpSettings, garp_loop
from pyingress.announce.probe import ProbeSettings, probe
from pyingress.announce.responder import Responder

log = logging.getLogger("pyingress.announce")

IPv4 = ipaddress.IPv4Address
ConflictHandler = Callable[[IPv4, ArpFrame], None]


@dataclass
class _Held:
    task: asyncio.Task[None]
    announcing: bool = False
    undo: list[Callable[[], None]] = field(default_factory=list)


class Speaker:
    """Holds a set of addresses on one interface; each runs as its own small task."""

    def __init__(
        self,
        responder: Responder,
        probe_settings: ProbeSettings,
        garp_settings: GarpSettings,
        conflict_retry: float = 5.0,
        on_conflict: ConflictHandler | None = None,
    ) -> None:
        self.responder = responder
        self.probe_settings = probe_settings
        self.garp_settings = garp_settings
        self.conflict_retry = conflict_retry
        self.on_conflict = on_conflict
        self._held: dict[IPv4, _Held] = {}

    @property
    def announcing(self) -> set[IPv4]:
        return {ip for ip, held in self._held.items() if held.announcing}

    def take(self, ip: IPv4) -> None:
        """Start probing and then announcing ``ip``; idempotent."""
        if ip not in self._held:
            held = _Held(task=asyncio.get_running_loop().create_task(self._run(ip)))
            self._held[ip] = held

    def release(self, ip: IPv4) -> None:
        """Stop answering for ``ip`` immediately (no await between the decision and the filter)."""
        held = self._held.pop(ip, None)
        if held is None:
            return
        self.responder.withdraw(ip)
        held.task.cancel()
        for undo in held.undo:
            undo()
        if held.announcing:
            self.responder.metrics.leader.labels(str(ip)).set(0)
            log.info("released %s", ip)

    def release_all(self) -> None:
        for ip in list(self._held):
            self.release(ip)

    async def _run(self, ip: IPv4) -> None:
        while True:
            conflict = await probe(self.responder, ip, self.probe_settings)
            if conflict is None:
                break
            self._conflict(ip, conflict, "probe")
            if self.conflict_retry <= 0:
                return
            await asyncio.sleep(self.conflict_retry)
        held = self._held[ip]
        self.responder.announce(ip)
        held.undo.append(self.responder.watch(ip, lambda frame: self._conflict(ip, frame, "live")))
        held.announcing = True
        self.responder.metrics.leader.labels(str(ip)).set(1)
        log.info("announcing %s on %s", ip, self.responder.sock.ifname)
        await garp_loop(self.responder, ip, self.garp_settings)

    def _conflict(self, ip: IPv4, frame: ArpFrame, phase: str) -> None:
        self.responder.metrics.conflicts.labels(str(ip)).inc()
        if phase == "probe":
            log.warning(
                "address conflict: %s is already used by %s; not announcing it",
                ip, format_mac(frame.sha),
            )  # fmt: skip
        else:
            log.warning("address conflict: %s is also claimed by %s", ip, format_mac(frame.sha))
        if self.on_conflict is not None:
            with contextlib.suppress(Exception):
                self.on_conflict(ip, frame)

"""Answer ARP who-has for the announced addresses on one interface.

The responder never adds an address to the interface: it replies from userspace with the
interface's MAC, exactly like MetalLB's layer2 speaker, so releasing an address is instant and
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

from pyingress.announce import bpf, frames
from pyingress.announce.frames import ArpFrame
from pyingress.announce.metrics import AnnounceMetrics
from pyingress.announce.packet import ArpSocket

log = logging.getLogger("pyingress.announce")

IPv4 = ipaddress.IPv4Address
SenderWatcher = Callable[[ArpFrame], None]


class Responder:
    """Owns the raw socket; decides per frame whether to reply, and tells watchers of senders."""

    def __init__(self, sock: ArpSocket, mac: bytes, metrics: AnnounceMetrics) -> None:
        self.sock = sock
        self.mac = mac
        self.metrics = metrics
        self.announced: set[IPv4] = set()
        self._watchers: dict[IPv4, list[SenderWatcher]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def announce(self, ip: IPv4) -> None:
        self.announced.add(ip)
        self._refilter()

    def withdraw(self, ip: IPv4) -> None:
        """Stop answering at once; the filter is narrowed in the same call."""
        self.announced.discard(ip)
        self._refilter()

    def watch(self, ip: IPv4, callback: SenderWatcher) -> Callable[[], None]:
        """Call ``callback`` for every frame another host sends from ``ip``; returns an undo."""
        self._watchers.setdefault(ip, []).append(callback)
        self._refilter()

        def unwatch() -> None:
            callbacks = self._watchers.get(ip, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(ip, None)
            self._refilter()

        return unwatch

    def send(self, frame: ArpFrame) -> None:
        try:
            self.sock.send(frame.pack())
        except OSError as exc:
            # A NIC that is down or a full queue must not kill the loop; the next send retries.
            log.warning("sending ARP on %s failed: %s", self.sock.ifname, exc)

    def _refilter(self) -> None:
        senders = set(self._watchers) | self.announced
        self.sock.set_filter(bpf.arp_filter(self.announced, senders))

    def _readable(self) -> None:
        for _ in range(64):  # bounded so a flood cannot starve the rest of the loop
            item = self.sock.recv()
            if item is None:
                return
            data, pkttype = item
            self.metrics.frames_received.inc()
            try:
                frame = frames.parse(data)
            except frames.FrameError:
                continue
            self.handle(frame, pkttype)

    def handle(self, frame: ArpFrame, pkttype: int = socket.PACKET_BROADCAST) -> ArpFrame | None:
        """Decide on one frame; returns the reply sent, if any."""
        if frame.sha == self.mac or frame.eth_src == self.mac:
            return None
        if frame.spa in self._watchers or frame.spa in self.announced:
            self._notify(frame)
        if frame.op != frames.OP_REQUEST or frame.tpa not in self.announced:
            return None
        if frame.is_gratuitous:
            return None  # another host announcing our address: reported above, never answered
        if pkttype not in (socket.PACKET_HOST, socket.PACKET_BROADCAST):
            return None
        if frame.eth_dst not in (frames.BROADCAST, self.mac):
            return None
        ip = str(frame.tpa)
        self.metrics.requests_received.labels(ip).inc()
        reply = frames.reply_to(frame, self.mac)
        self.send(reply)
        self.metrics.replies_sent.labels(ip).inc()
        return reply

    def _notify(self, frame: ArpFrame) -> None:
        for callback in list(self._watchers.get(frame.spa, ())):
            callback(frame)

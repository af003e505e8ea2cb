"""The responder's decisions and the speaker's take/probe/release cycle, with a socket double
that records sends and evaluates the attached BPF program (no privileges needed)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from pyingress.announce import bpf, frames
from pyingress.announce.garp import GarpSettings
from pyingress.announce.metrics import AnnounceMetrics
from pyingress.announce.probe import ProbeSettings
from pyingress.announce.responder import Responder
from pyingress.announce.speaker import Speaker
from tests.support.net import wait_until_async

MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")
VIP = ipaddress.IPv4Address("10.0.0.100")


class FakeSocket:
    """Stands in for ArpSocket: a socketpair for readiness, a list for sent frames."""

    ifname = "eth-test"

    def __init__(self) -> None:
        self.sent: list[frames.ArpFrame] = []
        self.program: list[bpf.Instruction] = []
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ours.setblocking(False)

    def set_filter(self, program: list[bpf.Instruction]) -> None:
        self.program = program

    def fileno(self) -> int:
        return self._ours.fileno()

    def deliver(self, frame: frames.ArpFrame) -> None:
        """Queue a frame as the kernel would: only if the current filter accepts it."""
        data = frame.pack()
        if bpf.run(self.program, data):
            self._theirs.send(data)

    def recv(self) -> tuple[bytes, int] | None:
        try:
            return self._ours.recv(2048), socket.PACKET_BROADCAST
        except BlockingIOError:
            return None

    def send(self, data: bytes) -> None:
        self.sent.append(frames.parse(data))

    def close(self) -> None:
        self._ours.close()
        self._theirs.close()


def who_has(ip: ipaddress.IPv4Address, spa: str = "10.0.0.10", dst: bytes = frames.BROADCAST
            ) -> frames.ArpFrame:  # fmt: skip
    return frames.ArpFrame(
        dst, PEER, frames.OP_REQUEST, PEER, ipaddress.IPv4Address(spa), frames.ZERO_MAC, ip
    )


def make() -> tuple[FakeSocket, Responder]:
    sock = FakeSocket()
    return sock, Responder(sock, MAC, AnnounceMetrics())  # type: ignore[arg-type]


def test_answers_only_announced_requests() -> None:
    sock, responder = make()
    responder.announce(VIP)
    reply = responder.handle(who_has(VIP))
    assert reply is not None and reply.eth_dst == PEER and reply.sha == MAC and reply.spa == VIP
    assert responder.handle(who_has(ipaddress.IPv4Address("10.0.0.101"))) is None
    assert responder.handle(who_has(VIP, dst=bytes.fromhex("02aaaaaaaaaa"))) is None
    assert responder.handle(who_has(VIP), socket.PACKET_OTHERHOST) is None
    gratuitous = who_has(VIP, spa=str(VIP))
    assert responder.handle(gratuitous) is None, "another host's GARP is never answered"
    assert sock.sent == [reply]


def test_withdraw_stops_answering_at_once() -> None:
    sock, responder = make()
    responder.announce(VIP)
    responder.withdraw(VIP)
    assert responder.handle(who_has(VIP)) is None
    assert not bpf.run(sock.program, who_has(VIP).pack())


async def test_speaker_probes_then_announces_then_releases() -> None:
    sock, responder = make()
    responder.start(asyncio.get_running_loop())
    speaker = Speaker(responder, ProbeSettings(2, 0.05), GarpSettings(bursts=2, interval=0.05))
    try:
        speaker.take(VIP)
        await wait_until_async(lambda: _true(VIP in speaker.announcing), what="announcing")
        await wait_until_async(
            lambda: _true(sum(f.is_gratuitous for f in sock.sent) == 4), what="two GARP bursts"
        )
        probes = [f for f in sock.sent if f.is_probe]
        assert len(probes) == 2 and sock.sent.index(probes[-1]) < 2
        sock.deliver(who_has(VIP))
        await wait_until_async(
            lambda: _true(
                sock.sent[-1].op == frames.OP_REPLY
                and sock.sent[-1].tpa.packed == bytes([10, 0, 0, 10])
            )
        )
        speaker.release(VIP)
        assert VIP not in responder.announced
        before = len(sock.sent)
        sock.deliver(who_has(VIP))
        await asyncio.sleep(0)  # give the loop a chance to (wrongly) answer
        assert len(sock.sent) == before
    finally:
        speaker.release_all()
        responder.stop()
        sock.close()


async def test_conflict_during_probe_blocks_the_claim() -> None:
    sock, responder = make()
    responder.start(asyncio.get_running_loop())
    seen: list[tuple[ipaddress.IPv4Address, bytes]] = []
    speaker = Speaker(
        responder, ProbeSettings(3, 0.2), GarpSettings(), conflict_retry=0,
        on_conflict=lambda ip, frame: seen.append((ip, frame.sha)),
    )  # fmt: skip
    try:
        speaker.take(VIP)
        await wait_until_async(lambda: _true(any(f.is_probe for f in sock.sent)))
        owner = bytes.fromhex("02bbbbbbbbbb")
        sock.deliver(frames.ArpFrame(MAC, owner, frames.OP_REPLY, owner, VIP, MAC,
                                     frames.ZERO_IP))  # fmt: skip
        await wait_until_async(lambda: _true(seen), what="the conflict callback")
        assert seen == [(VIP, owner)]
        assert VIP not in speaker.announcing and VIP not in responder.announced
        assert not any(f.is_gratuitous for f in sock.sent)
        assert responder.metrics.conflicts.labels(str(VIP))._value.get() == 1
    finally:
        speaker.release_all()
        responder.stop()
        sock.close()


async def _true(value: object) -> bool:
    return bool(value)

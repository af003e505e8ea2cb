"""Frame layouts, byte for byte, and the BPF program run on real frame bytes."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from pyingress.announce import bpf, frames

MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")
VIP = ipaddress.IPv4Address("10.0.0.100")
PEER_IP = ipaddress.IPv4Address("10.0.0.10")


def request(tpa: str, spa: str = "10.0.0.10", op: int = frames.OP_REQUEST) -> bytes:
    frame = frames.ArpFrame(
        frames.BROADCAST, PEER, op, PEER, ipaddress.IPv4Address(spa), frames.ZERO_MAC,
        ipaddress.IPv4Address(tpa),
    )  # fmt: skip
    return frame.pack()


def test_reply_golden_bytes() -> None:
    parsed = frames.parse(request("10.0.0.100"))
    reply = frames.reply_to(parsed, MAC).pack()
    assert reply[:42].hex() == (
        "020000000002" "020000000001" "0806" "0001" "0800" "06" "04" "0002"
        "020000000001" "0a000064" "020000000002" "0a00000a"
    )  # fmt: skip
    assert len(reply) == 60 and reply[42:] == b"\x00" * 18


def test_garp_forms_follow_what_linux_accepts() -> None:
    req = frames.garp_request(VIP, MAC)
    rep = frames.garp_reply(VIP, MAC)
    assert (req.op, req.tha, req.spa, req.tpa) == (frames.OP_REQUEST, frames.ZERO_MAC, VIP, VIP)
    assert (rep.op, rep.tha, rep.sha) == (frames.OP_REPLY, MAC, MAC)
    for frame in (req, rep):
        assert frame.eth_dst == frames.BROADCAST and frame.eth_src == MAC
        assert frames.parse(frame.pack()) == frame
        assert frame.is_gratuitous


def test_probe_has_zero_sender() -> None:
    probe = frames.parse(frames.probe(VIP, MAC).pack())
    assert probe.is_probe and probe.spa == frames.ZERO_IP and probe.tpa == VIP
    assert probe.tha == frames.ZERO_MAC


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 41, request("10.0.0.100")[:12] + b"\x08\x00" + request("10.0.0.100")[14:]],
)
def test_parse_rejects_non_arp(data: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.parse(data)


def test_parse_rejects_unknown_operation() -> None:
    with pytest.raises(frames.FrameError):
        frames.parse(request("10.0.0.100", op=3))


def test_filter_accepts_requests_for_targets_and_frames_from_senders() -> None:
    prog = bpf.arp_filter([VIP, ipaddress.IPv4Address("10.0.0.101")], [VIP])
    assert bpf.run(prog, request("10.0.0.100"))
    assert bpf.run(prog, request("10.0.0.101"))
    assert not bpf.run(prog, request("10.0.0.102"))
    assert not bpf.run(prog, request("10.0.0.3"))
    # A reply for the address is not ours to answer, but a reply *from* it is a conflict.
    assert not bpf.run(prog, request("10.0.0.100", op=frames.OP_REPLY))
    assert bpf.run(prog, request("10.0.0.10", spa="10.0.0.100", op=frames.OP_REPLY))
    ipv4 = bytearray(request("10.0.0.100"))
    ipv4[12:14] = b"\x08\x00"
    assert not bpf.run(prog, bytes(ipv4))
    assert not bpf.run(prog, b"\xff" * 20)


def test_empty_filter_drops_everything() -> None:
    assert not bpf.run(bpf.arp_filter([], []), request("10.0.0.100"))


def test_large_sets_fall_back_to_all_arp() -> None:
    many = [ipaddress.IPv4Address(f"10.1.{i // 256}.{i % 256}") for i in range(300)]
    prog = bpf.arp_filter(many, [])
    assert prog == bpf.accept_all_arp()
    assert bpf.run(prog, request("10.0.0.99"))


def test_jump_offsets_fit_one_byte_at_the_limit() -> None:
    some = [ipaddress.IPv4Address(f"10.1.0.{i}") for i in range(1, 120)]
    prog = bpf.arp_filter(some, some)
    assert prog != bpf.accept_all_arp()
    assert all(0 <= i.jt <= 255 and 0 <= i.jf <= 255 for i in prog)
    assert bpf.run(prog, request("10.1.0.119")) and not bpf.run(prog, request("10.1.0.120"))


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump to compile a reference")
def test_matches_tcpdump_on_a_single_address() -> None:
    """tcpdump's own compiler agrees on what to accept (different code, same verdicts)."""
    done = subprocess.run(
        ["tcpdump", "-ddd", "arp and arp[6:2]=1 and arp[24:4]=0x0a000064"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"tcpdump cannot compile without a device here: {done.stderr.strip()}")
    lines = done.stdout.split("\n")[1:]
    ref = [bpf.Instruction(*map(int, line.split())) for line in lines if line.strip()]
    ours = bpf.arp_filter([VIP], [])
    for frame in (request("10.0.0.100"), request("10.0.0.101"),
                  request("10.0.0.100", op=frames.OP_REPLY)):  # fmt: skip
        assert bool(_run_reference(ref, frame)) == bool(bpf.run(ours, frame))


def _run_reference(prog: list[bpf.Instruction], packet: bytes) -> int:
    """tcpdump emits a few more opcodes (jgt, ldb); interpret just enough of them."""
    acc, pc = 0, 0
    while True:
        ins = prog[pc]
        if ins.code in (0x28, 0x20, 0x30):
            size = {0x28: 2, 0x20: 4, 0x30: 1}[ins.code]
            if ins.k + size > len(packet):
                return 0
            acc = int.from_bytes(packet[ins.k : ins.k + size], "big")
        elif ins.code == 0x15:
            pc += ins.jt if acc == ins.k else ins.jf
        elif ins.code == 0x06:
            return ins.k
        else:
            raise AssertionError(f"opcode {ins.code:#x}")
        pc += 1

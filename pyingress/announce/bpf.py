"""A classic BPF program that lets only the ARP frames we care about reach the process.

Attached with ``SO_ATTACH_FILTER``, it keeps the rest of the segment's ARP chatter in the
kernel. It is an optimisation, not the authority: the responder re-checks every frame.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

LD_H_ABS = 0x28
LD_W_ABS = 0x20
JEQ_K = 0x15
RET_K = 0x06
ACCEPT_LEN = 0x40000
MAX_JUMP = 255
"""Conditional jump offsets are one byte; bigger address sets get the accept-all-ARP program."""

_OFF_ETHERTYPE = 12
_OFF_OP = 20
_OFF_SPA = 28
_OFF_TPA = 38


@dataclass(frozen=True, slots=True)
class Instruction:
    code: int
    jt: int
    jf: int
    k: int


def _ip_key(ip: ipaddress.IPv4Address) -> int:
    return int(ip)


def arp_filter(
    targets: Iterable[ipaddress.IPv4Address], senders: Iterable[ipaddress.IPv4Address]
) -> list[Instruction]:
    """Accept ARP *requests* for any of ``targets`` and any ARP frame *from* ``senders``.

    Requests for targets are what we answer; frames from senders are how another host
    claiming one of our addresses (a conflict) becomes visible.
    """
    target_keys = sorted({_ip_key(ip) for ip in targets})
    sender_keys = sorted({_ip_key(ip) for ip in senders})
    if not target_keys and not sender_keys:
        return [Instruction(RET_K, 0, 0, 0)]
    # Layout: [ethertype check][sender checks][op check][target checks][drop][accept]
    body = 2 + 1 + len(sender_keys) + 3 + len(target_keys)
    if body + 2 > MAX_JUMP:
        return accept_all_arp()
    drop_at = body
    accept_at = body + 1
    prog: list[Instruction] = []

    def jump_to(target: int) -> int:
        return target - len(prog) - 1

    prog.append(Instruction(LD_H_ABS, 0, 0, _OFF_ETHERTYPE))
    prog.append(Instruction(JEQ_K, 0, jump_to(drop_at), 0x0806))
    prog.append(Instruction(LD_W_ABS, 0, 0, _OFF_SPA))
    for key in sender_keys:
        prog.append(Instruction(JEQ_K, jump_to(accept_at), 0, key))
    prog.append(Instruction(LD_H_ABS, 0, 0, _OFF_OP))
    prog.append(Instruction(JEQ_K, 0, jump_to(drop_at), 1))
    prog.append(Instruction(LD_W_ABS, 0, 0, _OFF_TPA))
    for key in target_keys:
        prog.append(Instruction(JEQ_K, jump_to(accept_at), 0, key))
    prog.append(Instruction(RET_K, 0, 0, 0))
    prog.append(Instruction(RET_K, 0, 0, ACCEPT_LEN))
    return prog


def accept_all_arp() -> list[Instruction]:
    return [
        Instruction(LD_H_ABS, 0, 0, _OFF_ETHERTYPE),
        Instruction(JEQ_K, 0, 1, 0x0806),
        Instruction(RET_K, 0, 0, ACCEPT_LEN),
        Instruction(RET_K, 0, 0, 0),
    ]


def assemble(program: list[Instruction]) -> bytes:
    """The ``struct sock_filter`` array the kernel expects."""
    return b"".join(struct.pack("HBBI", i.code, i.jt, i.jf, i.k) for i in program)


def run(program: list[Instruction], packet: bytes) -> int:
    """Interpret the program on ``packet`` like the kernel would; for tests and sanity checks."""
    acc = 0
    pc = 0
    while pc < len(program):
        ins = program[pc]
        if ins.code in (LD_H_ABS, LD_W_ABS):
            size = 2 if ins.code == LD_H_ABS else 4
            if ins.k + size > len(packet):
                return 0
            acc = int.from_bytes(packet[ins.k : ins.k + size], "big")
        elif ins.code == JEQ_K:
            pc += ins.jt if acc == ins.k else ins.jf
        elif ins.code == RET_K:
            return ins.k
        else:
            raise ValueError(f"unsupported BPF opcode {ins.code:#x}")
        pc += 1
    raise ValueError("BPF program fell off the end")

"""Ethernet/IPv4 ARP frames: parsing what arrives and building what we send.

Only the 42-byte Ethernet + ARP layout for IPv4 over Ethernet is handled; anything else is
rejected by :func:`parse` so the responder never guesses.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
OP_REQUEST = 1
OP_REPLY = 2
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = ipaddress.IPv4Address("0.0.0.0")
FRAME_LEN = 42
MIN_FRAME_LEN = 60
"""Ethernet minimum without the FCS; short frames are padded so every NIC sends them as-is."""

_LAYOUT = struct.Struct("!6s6sHHHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpFrame:
    """One ARP frame with its Ethernet header, fields named as in RFC 826."""

    eth_dst: bytes
    eth_src: bytes
    op: int
    sha: bytes
    spa: ipaddress.IPv4Address
    tha: bytes
    tpa: ipaddress.IPv4Address

    def pack(self) -> bytes:
        raw = _LAYOUT.pack(
            self.eth_dst, self.eth_src, ETH_P_ARP, 1, ETH_P_IPV4, 6, 4, self.op,
            self.sha, self.spa.packed, self.tha, self.tpa.packed,
        )  # fmt: skip
        return raw.ljust(MIN_FRAME_LEN, b"\x00")

    @property
    def is_probe(self) -> bool:
        """An RFC 5227 probe: a request from a host that does not use any address yet."""
        return self.op == OP_REQUEST and self.spa == ZERO_IP

    @property
    def is_gratuitous(self) -> bool:
        return self.spa == self.tpa and self.spa != ZERO_IP


class FrameError(ValueError):
    """The bytes are not an Ethernet/IPv4 ARP frame."""


def parse(data: bytes) -> ArpFrame:
    if len(data) < FRAME_LEN:
        raise FrameError(f"too short for ARP: {len(data)} bytes")
    fields = _LAYOUT.unpack_from(data)
    dst, src, ethertype, htype, ptype, hlen, plen, op, sha, spa, tha, tpa = fields
    if ethertype != ETH_P_ARP:
        raise FrameError(f"not ARP: ethertype {ethertype:#06x}")
    if (htype, ptype, hlen, plen) != (1, ETH_P_IPV4, 6, 4):
        raise FrameError("not Ethernet/IPv4 ARP")
    if op not in (OP_REQUEST, OP_REPLY):
        raise FrameError(f"unknown ARP operation {op}")
    return ArpFrame(dst, src, op, sha, ipaddress.IPv4Address(spa), tha, ipaddress.IPv4Address(tpa))


def reply_to(request: ArpFrame, mac: bytes) -> ArpFrame:
    """The unicast is-at answer for ``request.tpa`` with our MAC (as MetalLB's responder)."""
    return ArpFrame(
        eth_dst=request.sha, eth_src=mac, op=OP_REPLY,
        sha=mac, spa=request.tpa, tha=request.sha, tpa=request.spa,
    )  # fmt: skip


def garp_request(ip: ipaddress.IPv4Address, mac: bytes) -> ArpFrame:
    """The RFC 5227 announcement: a broadcast request with THA zero, accepted by every Linux."""
    return ArpFrame(BROADCAST, mac, OP_REQUEST, mac, ip, ZERO_MAC, ip)


def garp_reply(ip: ipaddress.IPv4Address, mac: bytes) -> ArpFrame:
    """The reply form; THA equals SHA because Linux ignores replies with a broadcast THA."""
    return ArpFrame(BROADCAST, mac, OP_REPLY, mac, ip, mac, ip)


def probe(ip: ipaddress.IPv4Address, mac: bytes) -> ArpFrame:
    """An RFC 5227 probe: sender IP 0.0.0.0 so nobody's cache is updated by asking."""
    return ArpFrame(BROADCAST, mac, OP_REQUEST, mac, ZERO_IP, ZERO_MAC, ip)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)

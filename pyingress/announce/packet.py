"""The AF_PACKET socket: opening it safely, filtering it, and learning the interface's MAC.

Constants missing from Python 3.11's ``socket`` module are spelled out here with their Linux
values.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct

from pyingress.announce import bpf
from pyingress.announce.frames import ETH_P_ARP

SOL_SOCKET = 1
SO_ATTACH_FILTER = 26
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1


class PermissionProblem(Exception):
    """The process lacks CAP_NET_RAW."""


def interface_mac(ifname: str) -> bytes:
    """The hardware address via SIOCGIFHWADDR (sysfs may show another namespace's MAC)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", ifname.encode()[:15], 0, b"")
        try:
            result = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LookupError(f"no such interface: {ifname}") from exc
            raise
    family = struct.unpack_from("H", result, 16)[0]
    if family != ARPHRD_ETHER:
        raise LookupError(f"{ifname} is not an Ethernet interface (hardware type {family})")
    return bytes(result[18:24])


class ArpSocket:
    """A non-blocking AF_PACKET socket bound to one interface for ARP only.

    It is created with protocol 0 and bound to ARP only after the filter is attached, so no
    unfiltered frame is ever queued.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise PermissionProblem(
                "opening a raw packet socket needs CAP_NET_RAW "
                "(run as root or grant the capability)"
            ) from exc
        self._filter_buf: ctypes.Array[ctypes.c_char] | None = None
        self.set_filter(bpf.arp_filter([], []))
        self.sock.bind((ifname, ETH_P_ARP))
        self.sock.setblocking(False)

    def set_filter(self, program: list[bpf.Instruction]) -> None:
        """Attach (or atomically replace) the classic BPF program."""
        code = bpf.assemble(program)
        buf = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
        self.sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self._filter_buf = buf  # the kernel copies it, but keep it until the call is long done

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[bytes, int] | None:
        """One frame and its packet type (PACKET_HOST, PACKET_BROADCAST...), or None if empty."""
        try:
            data, addr = self.sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return None
        return data, int(addr[2])

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()

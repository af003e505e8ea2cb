"""Reading what the announcer and the wire say: metrics, pcap files, free ports in a namespace."""

from __future__ import annotations

import contextlib
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pyingress.announce import frames
from tests.announce.netlab import Namespace
from tests.support.net import free_port


def ns_free_port(ns: Namespace) -> int:
    return ns.run(free_port)


def metrics(ns: Namespace, port: int) -> dict[tuple[str, str], float]:
    """Samples as {(name, ip-label): value}, fetched from inside the namespace."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(ns.run(fetch)):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("ip", ""))] = sample.value
    return out


def healthz(ns: Namespace, port: int) -> int:
    def fetch() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)

    return ns.run(fetch)


@dataclass(frozen=True)
class Captured:
    time: float
    frame: frames.ArpFrame


def read_pcap(path: Path) -> list[Captured]:
    """ARP frames from a classic pcap file as tcpdump -w writes it (tolerates a torn tail)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    out: list[Captured] = []
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        if offset + incl > len(data):
            break
        with_frac = sec + frac / (1e9 if nano else 1e6)
        with contextlib.suppress(frames.FrameError):
            out.append(Captured(with_frac, frames.parse(data[offset : offset + incl])))
        offset += incl
    return out

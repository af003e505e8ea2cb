"""Announcer metrics (own Prometheus registry) and the small health/metrics HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class AnnounceMetrics:
    """Counters named after MetalLB's layer2 ones, per address where that helps debugging."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_received = Counter(
            "pyingress_announce_arp_frames_received",
            "ARP frames that passed the kernel filter and reached the process",
            registry=r,
        )
        self.requests_received = Counter(
            "pyingress_announce_arp_requests_received",
            "ARP requests received for an announced address",
            ["ip"],
            registry=r,
        )
        self.replies_sent = Counter(
            "pyingress_announce_arp_replies_sent", "ARP replies sent", ["ip"], registry=r
        )
        self.gratuitous_sent = Counter(
            "pyingress_announce_gratuitous_sent", "Gratuitous ARP frames sent", ["ip"], registry=r
        )
        self.probes_sent = Counter(
            "pyingress_announce_probes_sent", "RFC 5227 ARP probes sent", ["ip"], registry=r
        )
        self.conflicts = Counter(
            "pyingress_announce_conflicts",
            "Another host was seen using an address we probed or announce",
            ["ip"],
            registry=r,
        )
        self.leader = Gauge(
            "pyingress_announce_leader",
            "1 while this process announces the address",
            ["ip"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/healthz`` and ``/metrics`` over a minimal asyncio HTTP/1.1 responder.

    The announcer serves two fixed, tiny documents, so a full ASGI stack would only add
    start-up time and dependencies to a process that runs on every node.
    """

    def __init__(self, metrics: AnnounceMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.healthy = True
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
            status, ctype, body = self._route(parts[0] if parts else b"", path)
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _route(self, method: bytes, path: bytes) -> tuple[bytes, str, bytes]:
        if method not in (b"GET", b"HEAD"):
            return b"405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == b"/healthz":
            if self.healthy:
                return b"200 OK", "text/plain", b"ok\n"
            return b"503 Service Unavailable", "text/plain", b"unhealthy\n"
        if path == b"/metrics":
            return b"200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        return b"404 Not Found", "text/plain", b"not found\n"

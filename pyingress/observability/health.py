"""``/healthz``, ``/readyz`` and ``/metrics`` on the health port, served by uvicorn.

The app runs in the controller's own event loop: ``/healthz`` answering at all proves the loop
is not stuck, which is what a liveness probe should test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


class Readiness:
    """Named conditions that must all hold before traffic may be sent here."""

    def __init__(self, *conditions: str) -> None:
        self._pending = list(conditions)

    def done(self, condition: str) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(condition)

    def undo(self, condition: str) -> None:
        if condition not in self._pending:
            self._pending.append(condition)

    @property
    def ready(self) -> bool:
        return not self._pending

    @property
    def pending(self) -> list[str]:
        return list(self._pending)


def health_app(readiness: Readiness, registry: CollectorRegistry) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if readiness.ready:
            return PlainTextResponse("ready\n")
        waiting = ", ".join(readiness.pending)
        return PlainTextResponse(f"not ready: waiting for {waiting}\n", status_code=503)

    async def metrics(request: Request) -> Response:
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET", "HEAD"]),
        ]
    )


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; raises ``OSError`` (port in use, bad address) right away."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HealthServer:
    """uvicorn serving the health app on an already-bound socket, without its signal handling.

    ``serve()`` would install SIGINT/SIGTERM handlers; the ``serve`` command owns those, so
    this drives uvicorn's startup, tick loop and shutdown itself.
    """

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app, loop="none", lifespan="off", log_level="warning", access_log=False,
            server_header=False, log_config=None,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = self._server.config
        if not config.loaded:
            config.load()
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[self._sock])
        self._ticker = asyncio.create_task(self._server.main_loop())

    async def close(self) -> None:
        self._server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        await self._server.shutdown(sockets=[self._sock])

"""Run the double over real HTTP/1.1 with uvicorn, on its own thread and event loop.

Running on a separate thread lets both sync and async tests use it, and keeps the server
responsive while a test blocks. Hook methods hop onto the server's loop and wait for the result.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import uvicorn

from tests.support.fake_apiserver.app import FakeApiApp
from tests.support.fake_apiserver.hooks import Settings
from tests.support.fake_apiserver.store import Store

JSON = dict[str, Any]
T = TypeVar("T")


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class FakeApiServer:
    """``with FakeApiServer() as api: api.url`` — a Kubernetes API double on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, history_size: int = 10_000,
                 settings: Settings | None = None, require_namespaces: bool = False) -> None:
        self.host = host
        self.app = FakeApiApp(Store(history_size), settings, require_namespaces)
        self.app.hooks.refuse = self._set_refusing
        self._sock = _listen(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._started = threading.Event()
        self._paused_servers: list[asyncio.base_events.Server] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        config = uvicorn.Config(self.app, lifespan="off", log_level="critical", access_log=False,
                                http="httptools", loop="asyncio", timeout_graceful_shutdown=1)
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-apiserver", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the API-server double did not start")
        return self

    def _run(self) -> None:
        assert self._uvicorn is not None
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_until_complete(self._uvicorn.serve(sockets=[self._sock]))
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._uvicorn is None or self._thread is None:
            return
        self.call(self.app.hooks.drop_watches)
        self._uvicorn.should_exit = True
        self._thread.join(15)
        self._uvicorn = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the server's loop (where all state lives) and return its result."""
        assert self._loop is not None, "server not started"
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(30)

    # -- outage: refuse connections ---------------------------------------------------------

    def _set_refusing(self, refusing: bool) -> None:
        """Close the listening socket (connections are refused) or open it again on the
        same port. Runs on the server loop."""
        assert self._uvicorn is not None and self._loop is not None
        if refusing and not self._paused_servers:
            self._paused_servers = list(self._uvicorn.servers)
            for server in self._paused_servers:
                server.close()
            for connection in list(self._uvicorn.server_state.connections):
                connection.shutdown()
            self.app.hooks.drop_watches(abort=True)
        elif not refusing and self._paused_servers:
            self._paused_servers = []
            self._loop.create_task(self._reopen())

    async def _reopen(self) -> None:
        assert self._uvicorn is not None
        server = self._uvicorn
        config = server.config
        sock = _listen(self.host, self.port)

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server.server_state,
                app_state=server.lifespan.state,
            )

        loop = asyncio.get_running_loop()
        server.servers = [await loop.create_server(protocol, sock=sock, backlog=128)]

    # -- hooks (in-process) -----------------------------------------------------------------

    def seed(self, *objects: JSON) -> list[JSON]:
        return self.call(self.app.hooks.seed, list(objects))

    def compact(self) -> int:
        return self.call(self.app.hooks.compact)

    def bookmark(self) -> int:
        return self.call(self.app.hooks.bookmark)

    def drop_watches(self, abort: bool = False) -> int:
        return self.call(self.app.hooks.drop_watches, abort)

    def inject(self, status: int, count: int = 1, path_prefix: str = "",
               retry_after: int = 1) -> None:
        self.call(self.app.hooks.inject, status, count, path_prefix, retry_after)

    def outage(self, mode: str, duration: float | None = None) -> None:
        self.call(self.app.hooks.outage, mode, duration)

    def reset_faults(self) -> None:
        self.call(self.app.hooks.reset_faults)

    def requests(self, clear: bool = False) -> list[JSON]:
        return self.call(self.app.hooks.requests, clear)

    def configure(self, **values: Any) -> JSON:
        return self.call(self.app.hooks.configure, **values)

    def state(self) -> JSON:
        return self.call(self.app.hooks.state)

    @property
    def resource_version(self) -> int:
        return self.call(lambda: self.app.store.rv)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JSON]:
        """Read the stored objects directly (no request is logged)."""
        from tests.support.fake_apiserver.resources import by_kind

        resource = by_kind(api_version, kind)
        if resource is None:
            raise ValueError(f"unknown {api_version}/{kind}")
        return self.call(self.app.store.list_objects, resource.key, namespace)


logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)

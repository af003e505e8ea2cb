"""Fixtures for the data-plane tests: in-process echo backends and a proxy on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from pyingress.echo import EchoServer
from pyingress.proxy import ProxyConfig, ProxyMetrics, ProxyServer
from pyingress.routing.table import RouteTable, TableHolder
from tests.proxy.helpers import Handler, ScriptedBackend


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """Run every proxy test on uvloop, the loop the proxy runs on in production."""
    return {"uvloop": uvloop.new_event_loop}


class RunningProxy:
    def __init__(
        self, server: ProxyServer, holder: TableHolder, port: int, registry: CollectorRegistry
    ):
        self.server = server
        self.holder = holder
        self.port = port
        self.registry = registry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, table: RouteTable) -> None:
        self.holder.publish(table)


@pytest.fixture
async def echo() -> AsyncIterator[Callable[..., Awaitable[EchoServer]]]:
    """Start echo backends on free ports: ``await echo("name")``."""
    started: list[EchoServer] = []

    async def start(name: str = "echo") -> EchoServer:
        server = EchoServer(name)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Handler], Awaitable[ScriptedBackend]]]:
    """Start backends that run a coroutine per connection: ``await scripted(handler)``."""
    started: list[ScriptedBackend] = []

    async def start(handler: Handler) -> ScriptedBackend:
        backend = await ScriptedBackend(handler).start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.close()


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[..., Awaitable[RunningProxy]]]:
    """Start a :class:`ProxyServer` serving a table: ``await proxy_factory(table, config)``."""
    started: list[ProxyServer] = []

    async def start(table: RouteTable, config: ProxyConfig | None = None) -> RunningProxy:
        holder = TableHolder(table)
        registry = CollectorRegistry()
        server = ProxyServer(holder, config or ProxyConfig(), ProxyMetrics(registry))
        started.append(server)
        listener = await server.listen("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        return RunningProxy(server, holder, port, registry)

    yield start
    for server in started:
        await server.close(grace=1.0)

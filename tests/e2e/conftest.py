"""Fixtures for end-to-end tests: ``pyingress echo`` backends and ``pyingress serve`` runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.manifests import (
    Obj,
    backend,
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    write_manifests,
)
from tests.support.processes import ManagedProcess, echo_backend, serve_manifests


@dataclass
class Echo:
    name: str
    port: int
    process: ManagedProcess


@dataclass
class Serve:
    process: ManagedProcess
    http_port: int
    health_port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def health(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def get(self, host: str, target: str = "/", **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + target, headers={"Host": host}, timeout=10, **kwargs)  # type: ignore[arg-type]

    def backend_name(self, host: str, target: str = "/") -> str | None:
        """The name of the echo backend that answered, or None for a non-200 answer."""
        response = self.get(host, target)
        return str(response.json()["name"]) if response.status_code == 200 else None


@pytest.fixture
def echo() -> Iterator[Callable[[str], Echo]]:
    """Start ``pyingress echo`` backends by name; all are stopped after the test."""
    started: list[Echo] = []

    def start(name: str) -> Echo:
        process, port = echo_backend(name)
        started.append(Echo(name, port, process))
        process.wait_for_port(port)
        return started[-1]

    yield start
    for backend_process in started:
        backend_process.process.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., Serve]]:
    """Start ``pyingress serve --manifests FOLDER`` and wait until ``/readyz`` says 200."""
    started: list[ManagedProcess] = []

    def start(folder: Path, *extra: str) -> Serve:
        served = serve_manifests(folder, *extra)
        started.append(served.process)
        return Serve(served.process, served.http_port, served.health_port, folder)

    yield start
    for process in started:
        process.stop()


def app_objects(name: str, echo_port: int, namespace: str = "default") -> list[Obj]:
    """A Service named ``name`` whose one endpoint is the echo backend on ``echo_port``."""
    return [
        service(name, [{"name": "http", "port": 80}], namespace=namespace),
        endpoint_slice(name, ["127.0.0.1"], echo_port, namespace=namespace),
    ]


def host_ingress(name: str, host: str | None, *paths: Obj, **kwargs: object) -> Obj:
    return ingress(name, [rule(host, *paths)], **kwargs)  # type: ignore[arg-type]


def catch_all(name: str, service_name: str) -> Obj:
    return ingress(name, default_backend=backend(service_name, 80))


__all__ = [
    "Echo", "Serve", "app_objects", "catch_all", "host_ingress", "path", "write_manifests",
]  # fmt: skip

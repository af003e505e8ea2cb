"""Fixtures for the auth tests: echo backends, the filter harness, manifests with auth."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.manifests import (
    Obj,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    write_manifests,
)
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess, running_echo, serve_manifests


@dataclass
class Running:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, host: str, target: str = "/", **kwargs: object) -> httpx.Response:
        headers = {"Host": host, **dict(kwargs.pop("headers", {}) or {})}  # type: ignore[call-overload]
        return httpx.get(self.url + target, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def echo_port() -> Iterator[int]:
    """One ``pyingress echo`` backend (JSON echo of the request it received)."""
    with running_echo("protected") as port:
        yield port


def app_objects(echo_port: int, host: str, annotations: dict[str, str], name: str = "app") -> list[Obj]:
    """An Ingress for ``host`` with ``annotations`` in front of the echo backend."""
    return [
        ingress(name, [rule(host, path("/", f"{name}-svc"))], annotations=annotations),
        service(f"{name}-svc"),
        endpoint_slice(f"{name}-svc", ["127.0.0.1"], echo_port),
    ]


def secret(name: str, data: dict[str, bytes], namespace: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()}}


def start_serve(folder: Path, *flags: str, http_port: int = 0) -> Running:
    """``pyingress serve --manifests FOLDER`` on free loopback ports, ready when it returns."""
    served = serve_manifests(folder, *flags, http_port=http_port)
    return Running(served.process, served.http_port)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start ``pyingress serve`` on a folder of these objects; stopped after the test."""
    started: list[ManagedProcess] = []

    def start(objects: list[Obj], *flags: str) -> Running:
        folder = tmp_path / f"manifests-{len(started)}"
        folder.mkdir()
        write_manifests(folder / "objects.yaml", ingress_class(), *objects)
        running = start_serve(folder, *flags)
        started.append(running.process)
        return running

    yield start
    for process in started:
        process.stop()


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


__all__ = ["Running", "app_objects", "basic_header", "secret", "wait_until"]

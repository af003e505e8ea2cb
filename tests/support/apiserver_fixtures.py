"""Fixtures for suites that need a Kubernetes API: the double in-process or as a process, a
ready kubernetes_asyncio client, and a kubeconfig for ``pyingress serve --kubeconfig``.

Use them from a conftest.py::

    from tests.support.apiserver_fixtures import (  # noqa: F401
        api_client, fake_apiserver, fake_apiserver_process, kubeconfig,
    )
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

JSON = dict[str, Any]
DUMMY_TOKEN = "fake-apiserver-token"


def configuration(url: str, token: str = DUMMY_TOKEN, ca_cert: str | None = None
                  ) -> client.Configuration:
    """A client configuration for ``url``. The token goes under ``BearerToken``: the library
    ignores an ``authorization`` key."""
    config = client.Configuration(host=url)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    if ca_cert:
        config.ssl_ca_cert = ca_cert
    return config


def write_kubeconfig(path: Path, url: str, token: str = DUMMY_TOKEN,
                     namespace: str = "default") -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                   "namespace": namespace}}],
        "current-context": "fake",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(document))
    return path


class HookClient:
    """The double's test hooks over HTTP, for a double running as a separate process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=30)

    def _call(self, method: str, name: str, body: JSON | None = None) -> Any:
        response = self._http.request(method, f"/_test/{name}", json=body)
        response.raise_for_status()
        return response.json()

    def seed(self, *objects: JSON) -> list[JSON]:
        return list(self._call("POST", "seed", {"items": list(objects)})["items"])

    def compact(self) -> int:
        return int(self._call("POST", "compact")["resourceVersion"])

    def bookmark(self) -> int:
        return int(self._call("POST", "bookmark")["watches"])

    def drop_watches(self, abort: bool = False) -> int:
        return int(self._call("POST", "drop-watches", {"abort": abort})["watches"])

    def inject(self, status: int, count: int = 1, path_prefix: str = "",
               retry_after: int = 1) -> None:
        self._call("POST", "inject", {"status": status, "count": count,
                                      "pathPrefix": path_prefix, "retryAfter": retry_after})

    def outage(self, mode: str, duration: float | None = None) -> None:
        """Over HTTP a ``refuse`` outage can only end by itself: give it a ``duration``."""
        self._call("POST", "outage", {"mode": mode, "duration": duration})

    def reset_faults(self) -> None:
        self._call("POST", "reset-faults")

    def requests(self, clear: bool = False) -> list[JSON]:
        return list(self._call("DELETE" if clear else "GET", "requests")["items"])

    def configure(self, **values: Any) -> JSON:
        return dict(self._call("POST", "settings", values))

    def state(self) -> JSON:
        return dict(self._call("GET", "state"))

    def close(self) -> None:
        self._http.close()


class FakeApiServerProcess:
    """The double as its own process (``python -m tests.support.fake_apiserver``)."""

    def __init__(self, tmp_path: Path, host: str = "127.0.0.1", *extra: str) -> None:
        port_file = tmp_path / "fake-apiserver.port"
        self.host = host
        self.process = ManagedProcess([
            sys.executable, "-m", "tests.support.fake_apiserver", "--host", host, "--port", "0",
            "--port-file", str(port_file), *extra,
        ], cwd=str(Path(__file__).resolve().parents[2]))

        def bound() -> bool:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"fake apiserver exited:\n{self.process.output}")
            return port_file.exists()

        wait_until(bound, what="the fake apiserver to write its port file")
        self.port = int(port_file.read_text())
        self.url = f"http://{host}:{self.port}"
        self.hooks = HookClient(self.url)

    def stop(self) -> None:
        self.hooks.close()
        self.process.stop()


@pytest.fixture
def fake_apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def fake_apiserver_process(tmp_path: Path) -> Iterator[FakeApiServerProcess]:
    server = FakeApiServerProcess(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def api_client(fake_apiserver: FakeApiServer) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(configuration(fake_apiserver.url)) as api:
        yield api


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_apiserver: FakeApiServer) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)

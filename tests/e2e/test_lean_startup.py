"""``serve --manifests`` loads only what it uses.

The Kubernetes client (``kubernetes_asyncio``, ``aiohttp``) and the login libraries (``httpx``,
``authlib``, ``joserfc``) cost about 50 MB of memory and a second of startup. They are loaded
for cluster mode, for a route with an auth policy, or for ACME; a real ``serve`` process
reports every import it makes (``PYTHONPROFILEIMPORTTIME``) and the tests read that report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.manifests import (
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    write_manifests,
)
from tests.support.net import free_port, wait_until
from tests.support.processes import echo_backend, pyingress

HEAVY = ("kubernetes_asyncio", "aiohttp", "httpx", "authlib", "joserfc")


class Running:
    def __init__(self, folder: Path) -> None:
        self.http_port, self.health_port = free_port(), free_port()
        self.process = pyingress(
            "serve", "--manifests", str(folder), "--bind", "127.0.0.1",
            "--http-port", str(self.http_port), "--https-port", str(free_port()),
            "--health-port", str(self.health_port),
            env={"PYTHONPROFILEIMPORTTIME": "1"},
        )  # fmt: skip

    def ready(self) -> bool:
        if self.process.proc.poll() is not None:
            raise AssertionError(f"serve exited:\n{self.process.output}")
        health = f"http://127.0.0.1:{self.health_port}/readyz"
        return httpx.get(health, timeout=5).status_code == 200

    def get(self, host: str) -> int:
        url = f"http://127.0.0.1:{self.http_port}/"
        return httpx.get(url, headers={"Host": host}, timeout=10).status_code

    def imported(self) -> set[str]:
        """Top-level packages imported so far (the import-time report lists each module)."""
        names = set()
        for line in self.process.output.splitlines():
            if line.startswith("import time:") and "|" in line:
                names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
        return names


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    app, app_port = echo_backend("app")
    write_manifests(
        tmp_path / "apps.yaml",
        ingress("plain", [rule("plain.test", path("/", "app"))], class_name=None),
        ingress(
            "guarded",
            [rule("guarded.test", path("/", "app"))],
            class_name=None,
            annotations={"nginx.ingress.kubernetes.io/auth-url": "http://127.0.0.1:9/auth"},
        ),
        service("app"),
        endpoint_slice("app", ["127.0.0.1"], app_port),
    )
    server = Running(tmp_path)
    try:
        app.wait_for_port(app_port)
        wait_until(server.ready, what="pyingress serve to be ready")
        yield server
    finally:
        server.process.stop()
        app.stop()


def test_serving_plain_routes_loads_no_cluster_or_login_libraries(running: Running) -> None:
    assert running.get("plain.test") == 200
    imported = running.imported()
    assert {"pyingress", "uvloop", "httptools"} <= imported  # the report is there
    assert not imported.intersection(HEAVY)


def test_a_route_with_auth_loads_the_login_libraries_when_used(running: Running) -> None:
    assert "httpx" not in running.imported()
    running.get("guarded.test")  # the auth service is unreachable: refused, whatever the status
    wait_until(lambda: "httpx" in running.imported(), what="httpx to be imported")
    assert "kubernetes_asyncio" not in running.imported()

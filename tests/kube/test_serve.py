"""Acceptance: ``pyingress serve --kubeconfig`` against the API double, over real HTTP.

The controller runs as a subprocess, routes to ``pyingress echo`` backends on loopback, and
reads the cluster from the double; tests change objects through the double's API (as kubectl
would) and watch routing, status, Leases and Events change.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube.conftest import endpoint_slice, ingress, ingress_class, secret, service
from tests.support.apiserver_fixtures import write_kubeconfig
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import free_port, port_open, wait_until
from tests.support.processes import ManagedProcess, echo_backend, pyingress

pytestmark = pytest.mark.timeout(120)

JSON = dict[str, Any]
PUBLISHED = "192.0.2.10"
"""A documentation address (TEST-NET-1): only ever written into status, never contacted."""


class Kube:
    """Changes objects through the double's API, as kubectl would."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=10)

    @staticmethod
    def path(obj: JSON, name: bool = True) -> str:
        group = obj["apiVersion"]
        prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
        plural = {"Ingress": "ingresses", "IngressClass": "ingressclasses", "Service": "services",
                  "EndpointSlice": "endpointslices", "Secret": "secrets"}[obj["kind"]]
        namespace = obj["metadata"].get("namespace")
        base = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        return f"{base}/{obj['metadata']['name']}" if name else base

    def create(self, *objects: JSON) -> None:
        for obj in objects:
            self.http.post(self.path(obj, name=False), json=obj).raise_for_status()

    def patch(self, obj: JSON, patch: JSON, subresource: str = "") -> JSON:
        response = self.http.patch(
            self.path(obj) + subresource, json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )  # fmt: skip
        response.raise_for_status()
        return dict(response.json())

    def delete(self, obj: JSON) -> None:
        self.http.delete(self.path(obj)).raise_for_status()

    def get(self, obj: JSON) -> JSON | None:
        response = self.http.get(self.path(obj))
        return None if response.status_code == 404 else dict(response.json())

    def status_addresses(self, obj: JSON) -> list[str]:
        current = self.get(obj) or {}
        entries = ((current.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return [e.get("ip") or e.get("hostname") for e in entries]

    def status_writes(self) -> list[JSON]:
        return [r for r in self.server.requests()
                if r["method"] in ("PATCH", "PUT") and r["path"].endswith("/status")
                and "/ingresses/" in r["path"]]  # fmt: skip


class Backends:
    """``pyingress echo`` processes by name, each on its own port."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._processes: list[ManagedProcess] = []

    def start(self, *names: str) -> None:
        started = []
        for name in names:
            process, port = echo_backend(name)
            self._processes.append(process)
            self.ports[name] = port
            started.append((process, port))
        for process, port in started:
            process.wait_for_port(port)

    def stop(self) -> None:
        for process in self._processes:
            process.stop()


class Controller:
    """One ``pyingress serve --kubeconfig`` replica."""

    def __init__(self, kubeconfig: Path, name: str, *extra: str) -> None:
        self.http_port = free_port()
        self.health_port = free_port()
        self.name = name
        self.process = pyingress(
            "serve", "--kubeconfig", str(kubeconfig), "--bind", "127.0.0.1",
            "--http-port", str(self.http_port), "--https-port", str(free_port()),
            "--health-port", str(self.health_port), "--election-namespace", "default",
            "--log-level", "debug", *extra,
            env={"POD_NAME": name},
        )  # fmt: skip
        self.client = httpx.Client(timeout=10)
        self.stopped = False

    def wait_ready(self) -> None:
        self.process.wait_for_port(self.http_port)

        def ready() -> bool:
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            return self.client.get(url).status_code == 200

        wait_until(ready, what=f"{self.name} to be ready")

    def get(self, host: str, path: str = "/") -> httpx.Response:
        return self.client.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host})

    def backend_of(self, host: str) -> str | int:
        """The echo backend's name, or the status code when no backend answered."""
        response = self.get(host)
        return str(response.json()["name"]) if response.status_code == 200 else response.status_code

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.client.close()
        self.process.stop(sig)


@pytest.fixture
def kube(fake_apiserver: FakeApiServer) -> Iterator[Kube]:
    client = Kube(fake_apiserver)
    try:
        yield client
    finally:
        client.http.close()


@pytest.fixture
def backends() -> Iterator[Backends]:
    group = Backends()
    try:
        group.start("blue", "green")
        yield group
    finally:
        group.stop()


@pytest.fixture
def controllers(
    tmp_path: Path, fake_apiserver: FakeApiServer
) -> Iterator[Callable[..., Controller]]:
    config = write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)
    started: list[Controller] = []

    def start(name: str = "replica-a", *extra: str, ready: bool = True) -> Controller:
        controller = Controller(config, name, *extra)
        started.append(controller)
        if ready:
            controller.wait_ready()
        return controller

    try:
        yield start
    finally:
        for controller in started:
            controller.stop()


def web_app(backends: Backends, host: str = "a.example", name: str = "site") -> list[JSON]:
    return [
        service("web"),
        endpoint_slice("web", backends.ports["blue"]),
        ingress(name, host, "web"),
    ]


def until(condition: Callable[[], object], what: str) -> None:
    wait_until(condition, what=what)


def test_routing_follows_ingresses_services_and_endpoints(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller]
) -> None:
    kube.create(ingress_class(), *web_app(backends))
    proxy = controllers("replica-a", "--publish-address", PUBLISHED)
    until(lambda: proxy.backend_of("a.example") == "blue", "the first route")

    slice_ = endpoint_slice("web", backends.ports["blue"])
    kube.patch(slice_, {"ports": [{"name": "http", "port": backends.ports["green"],
                                   "protocol": "TCP"}]})  # fmt: skip
    until(lambda: proxy.backend_of("a.example") == "green", "the endpoint change")

    kube.create(service("api"), endpoint_slice("api", backends.ports["blue"]),
                ingress("api", "b.example", "api"))  # fmt: skip
    until(lambda: proxy.backend_of("b.example") == "blue", "a new Ingress")
    kube.patch(ingress("api", "b.example", "api"), {"spec": {"rules": [{
        "host": "c.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}})  # fmt: skip
    until(lambda: proxy.backend_of("c.example") == "blue", "the changed host")
    assert proxy.backend_of("b.example") == 404

    kube.delete(endpoint_slice("api", 0))
    until(lambda: proxy.backend_of("c.example") == 503, "no endpoints -> 503")
    kube.delete(service("api"))
    kube.delete(ingress("api", "c.example", "api"))
    until(lambda: proxy.backend_of("c.example") == 404, "the deleted Ingress")
    assert proxy.backend_of("a.example") == "green"


def test_unknown_class_is_never_served_nor_given_status(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller]
) -> None:
    stray = ingress("stray", "stray.example", "web", class_name="nonexistent")
    other = ingress("other", "other.example", "web", class_name="other")
    kube.create(ingress_class(), ingress_class("other", "example.com/other"), *web_app(backends),
                stray, other)  # fmt: skip
    proxy = controllers("replica-a", "--publish-address", PUBLISHED)
    until(lambda: kube.status_addresses(ingress("site", "", "")) == [PUBLISHED], "own status")
    # The own Ingress was written after both strays were listed; they must stay untouched.
    assert proxy.backend_of("stray.example") == 404
    assert proxy.backend_of("other.example") == 404
    assert kube.status_addresses(stray) == [] and kube.status_addresses(other) == []
    assert all("/stray/" not in r["path"] and "/other/" not in r["path"]
               for r in kube.status_writes())  # fmt: skip


class RequestLoop:
    """Requests to one host from a thread, until stopped or a bound is hit; keeps every result."""

    def __init__(self, proxy: Controller, host: str, limit: int = 20000) -> None:
        self.proxy = proxy
        self.host = host
        self.limit = limit
        self.results: list[str | int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            url = f"http://127.0.0.1:{self.proxy.http_port}/"
            while not self._stop.is_set() and len(self.results) < self.limit:
                try:
                    response = http.get(url, headers={"Host": self.host})
                    self.results.append(response.status_code)
                except httpx.HTTPError as exc:
                    self.results.append(type(exc).__name__)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for_more(self, count: int = 20) -> None:
        target = len(self.results) + count
        until(lambda: len(self.results) >= target or not self._thread.is_alive(), "requests")


def test_outage_dropped_watches_and_compaction_fail_no_request(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller],
    fake_apiserver: FakeApiServer,
) -> None:
    kube.create(ingress_class(), *web_app(backends))
    proxy = controllers("replica-a", "--publish-address", PUBLISHED)
    until(lambda: proxy.backend_of("a.example") == "blue", "the first route")

    def watches_retried_after(mark: int) -> bool:
        return len([r for r in fake_apiserver.requests()[mark:] if "watch=" in r["query"]]) >= 5

    with RequestLoop(proxy, "a.example") as loop:
        loop.wait_for_more()
        fake_apiserver.drop_watches()  # clean end, as a restarting apiserver does
        loop.wait_for_more()
        fake_apiserver.drop_watches(abort=True)  # cut mid-stream
        loop.wait_for_more()

        mark = len(fake_apiserver.requests())
        fake_apiserver.outage("503")
        fake_apiserver.drop_watches(abort=True)
        until(lambda: watches_retried_after(mark), "watches to hit the outage")
        loop.wait_for_more(100)
        fake_apiserver.seed(ingress("late", "late.example", "web"))
        fake_apiserver.compact()  # the watches' resourceVersions are now too old: 410
        fake_apiserver.reset_faults()
        until(lambda: proxy.backend_of("late.example") == "blue", "the re-list after 410")

        fake_apiserver.outage("refuse")
        fake_apiserver.drop_watches(abort=True)
        loop.wait_for_more(100)
        fake_apiserver.outage("off")
        until(lambda: port_open(fake_apiserver.port), "the API server to listen again")
        kube.patch(endpoint_slice("web", 0), {"ports": [
            {"name": "http", "port": backends.ports["green"], "protocol": "TCP"}]})  # fmt: skip
        until(lambda: proxy.backend_of("a.example") == "green", "changes after the outage")
        loop.wait_for_more()

    assert "expired" in proxy.process.output  # the 410 path really ran: a re-list
    failures = [r for r in loop.results if r != 200]
    print(f"requests during the API faults: {len(loop.results)}, failed: {len(failures)}")
    assert len(loop.results) > 300
    assert failures == [], f"{len(failures)} of {len(loop.results)} requests failed"


def lease(kube: Kube) -> JSON:
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/pyingress-leader"
    response = kube.http.get(path)
    return dict(response.json()) if response.status_code == 200 else {}


def holder(kube: Kube) -> str:
    return str((lease(kube).get("spec") or {}).get("holderIdentity") or "")


SHORT_LEASE = ("--election-lease-duration", "3", "--election-renew-deadline", "2",
               "--election-retry-period", "0.5")  # fmt: skip


def test_two_replicas_elect_one_status_writer_and_hand_over_on_kill(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller],
    fake_apiserver: FakeApiServer,
) -> None:
    publish = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "pyingress", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}  # fmt: skip
    kube.create(ingress_class(), *web_app(backends), ingress("two", "b.example", "web"), publish)
    kube.patch(publish, {"status": {"loadBalancer": {"ingress": [{"ip": PUBLISHED}]}}}, "/status")
    flags = ("--publish-service", "default/pyingress", *SHORT_LEASE)
    replicas = {name: controllers(name, *flags) for name in ("replica-a", "replica-b")}
    site, two = ingress("site", "", ""), ingress("two", "", "")
    until(lambda: kube.status_addresses(site) == kube.status_addresses(two) == [PUBLISHED],
          "status from the elected replica")  # fmt: skip

    leader = holder(kube).rsplit("-", 1)[0]
    assert leader in replicas
    # Both replicas run for several renew periods; there were exactly two writes, one per
    # Ingress, and none since: one writer, and only on change.
    renewals = lease(kube)["metadata"]["resourceVersion"]
    until(lambda: lease(kube)["metadata"]["resourceVersion"] != renewals, "a renewal")
    kube.create(service("noise"), endpoint_slice("noise", backends.ports["green"]))
    until(lambda: all(r.backend_of("a.example") == "blue" for r in replicas.values()), "routes")
    assert len(kube.status_writes()) == 2

    killed_at = time.monotonic()
    replicas[leader].stop(signal.SIGKILL)
    successor = next(name for name in replicas if name != leader)
    wait_until(lambda: holder(kube).startswith(successor + "-"), timeout=30,
               what="the other replica to take the Lease")  # fmt: skip
    handover = time.monotonic() - killed_at
    print(f"lease handover after SIGKILL: {handover:.2f}s (lease duration 3s)")
    assert lease(kube)["spec"]["leaseTransitions"] >= 1

    kube.patch(publish, {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}},
               "/status")  # fmt: skip
    until(lambda: kube.status_addresses(site) == kube.status_addresses(two) == ["192.0.2.11"],
          "the new leader to publish the changed address")  # fmt: skip
    assert len(kube.status_writes()) == 4


def events_about(server: FakeApiServer, name: str) -> list[JSON]:
    return [e for e in server.objects("v1", "Event", "default")
            if e["involvedObject"]["name"] == name]  # fmt: skip


def test_problems_become_deduplicated_events(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller],
    fake_apiserver: FakeApiServer,
) -> None:
    broken = ingress("broken", "broken.example", "missing")
    kube.create(ingress_class(), *web_app(backends), broken)
    interval = 0.2
    proxy = controllers("replica-a", "--publish-address", PUBLISHED,
                        "--event-interval", str(interval))  # fmt: skip
    until(lambda: events_about(fake_apiserver, "broken"), "an Event for the broken Ingress")
    (event,) = events_about(fake_apiserver, "broken")
    stored = kube.get(broken) or {}
    assert event["type"] == "Warning"
    assert event["reason"] == "ServiceNotFound"
    assert "missing" in event["message"]
    assert event["source"]["component"] == "pyingress"
    assert event["involvedObject"]["uid"] == stored["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "Ingress"
    assert event["count"] == 1 and event["firstTimestamp"] and event["lastTimestamp"]

    # Unrelated changes recompile without repeating the Event.
    for index in range(5):
        kube.create(service(f"noise{index}"))
    until(lambda: proxy.backend_of("a.example") == "blue", "routes")
    # The problem goes away and comes back, however much later (on a busy machine, seconds):
    # the same Event is counted, once, and no new one is made.
    kube.create(service("missing"))
    until(lambda: proxy.backend_of("broken.example") == 503, "the fixed backend (no endpoints)")
    bump_due = time.monotonic() + interval  # a recurrence within the interval is not counted
    until(lambda: time.monotonic() > bump_due, "the event interval to pass")
    kube.delete(service("missing"))
    until(lambda: problem_count(proxy) == 1, "the problem to come back")

    def recorded() -> bool:
        events = events_about(fake_apiserver, "broken")
        return len(events) > 1 or events[0]["count"] > 1

    until(recorded, "the recurrence to be recorded")
    (bumped,) = events_about(fake_apiserver, "broken")  # a second Event would be a duplicate
    assert bumped["metadata"]["name"] == event["metadata"]["name"]
    assert bumped["count"] == 2
    assert events_about(fake_apiserver, "site") == []


def problem_count(proxy: Controller) -> float:
    metrics = proxy.client.get(f"http://127.0.0.1:{proxy.health_port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("pyingress_route_table_problems{")
    )


def test_tls_secret_is_fetched_when_it_appears_and_never_logged(
    kube: Kube, backends: Backends, controllers: Callable[..., Controller],
    fake_apiserver: FakeApiServer,
) -> None:
    site = ingress("site", "a.example", "web", tls_secret="site-tls")
    kube.create(ingress_class(), service("web"), endpoint_slice("web", backends.ports["blue"]),
                site, secret("unrelated", data={"token": "unrelated-secret-value-1"}))
    proxy = controllers("replica-a", "--publish-address", PUBLISHED)
    until(lambda: [e["reason"] for e in events_about(fake_apiserver, "site")] == ["SecretNotFound"],
          "the missing-Secret Event")  # fmt: skip
    assert problem_count(proxy) == 1
    material = "-----BEGIN PRIVATE KEY-----not-a-real-key-secret-value-2"
    kube.create(secret("site-tls", data={"tls.crt": "certificate", "tls.key": material}))
    until(lambda: problem_count(proxy) == 0, "the Secret to be picked up")
    logged = proxy.process.output
    assert "site-tls" in logged or "SecretNotFound" in logged  # the log is really captured
    assert "secret-value" not in logged
    assert base64.b64encode(material.encode()).decode()[:24] not in logged


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyingress", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_check_and_routes_read_the_cluster_once(
    kube: Kube, tmp_path: Path, fake_apiserver: FakeApiServer
) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)
    kube.create(ingress_class(), service("web"), endpoint_slice("web", 9),
                ingress("site", "a.example", "web"))  # fmt: skip
    routes = run_command("routes", "--kubeconfig", str(config))
    assert routes.returncode == 0, routes.stderr
    assert "a.example" in routes.stdout
    assert run_command("check", "--kubeconfig", str(config)).returncode == 0

    kube.create(ingress("broken", "b.example", "missing"))
    check = run_command("check", "--kubeconfig", str(config))
    assert check.returncode == 1
    assert "Ingress default/broken: ServiceNotFound" in check.stdout + check.stderr


def test_unreadable_kubeconfig_is_a_one_line_startup_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for command in ("serve", "routes"):
        result = run_command(command, "--kubeconfig", str(missing))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot load Kubernetes configuration" in lines[0], lines

"""``pyingress serve --manifests`` as a subprocess, routing to ``pyingress echo`` backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import Echo, Serve, app_objects, catch_all, host_ingress
from tests.support.manifests import ingress_class, path, write_manifests
from tests.support.net import wait_until


def write_apps(folder: Path, backends: dict[str, Echo]) -> None:
    for name, backend_process in backends.items():
        write_manifests(folder / f"{name}.yaml", *app_objects(name, backend_process.port))


def test_routes_by_host_and_path(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    backends = {name: echo(name) for name in ("web", "api", "other")}
    write_apps(tmp_path, backends)
    write_manifests(
        tmp_path / "ingresses.yaml",
        ingress_class(),
        host_ingress("site", "site.example", path("/", "web"), path("/api", "api")),
        host_ingress("other", "*.other.example", path("/", "other")),
    )
    running = serve(tmp_path)
    assert running.backend_name("site.example", "/") == "web"
    assert running.backend_name("SITE.example:8080", "/index.html") == "web"
    assert running.backend_name("site.example", "/api") == "api"
    assert running.backend_name("site.example", "/api/v1/users?x=1") == "api"
    assert running.backend_name("site.example", "/apix") == "web"
    assert running.backend_name("a.other.example", "/") == "other"
    assert running.get("b.a.other.example").status_code == 404
    assert running.get("unknown.example").status_code == 404


def test_changed_file_is_live_without_restart(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    backends = {name: echo(name) for name in ("blue", "green")}
    write_apps(tmp_path, backends)
    routes = tmp_path / "routes.yaml"
    write_manifests(routes, ingress_class(), host_ingress("app", "app.example", path("/", "blue")))
    running = serve(tmp_path)
    assert running.backend_name("app.example") == "blue"

    written = time.monotonic()
    write_manifests(routes, ingress_class(), host_ingress("app", "app.example", path("/", "green")))
    wait_until(lambda: running.backend_name("app.example") == "green", what="green live")
    print(f"route change live after {time.monotonic() - written:.3f}s")

    routes.unlink()
    wait_until(lambda: running.get("app.example").status_code == 404, what="route removed")
    write_manifests(routes, ingress_class(), host_ingress("app", "app.example", path("/", "blue")))
    wait_until(lambda: running.backend_name("app.example") == "blue", what="route back")


def test_broken_file_keeps_serving_its_last_good_routes(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    write_apps(tmp_path, {"web": echo("web")})
    routes = tmp_path / "routes.yaml"
    write_manifests(routes, ingress_class(), host_ingress("app", "app.example", path("/", "web")))
    running = serve(tmp_path)
    routes.write_text("kind: Ingress\nmetadata:\n  name: app\n bad: indent\n")
    wait_until(lambda: "routes.yaml" in running.process.output, what="problem logged")
    assert "line=4" in running.process.output
    assert running.backend_name("app.example") == "web"
    metrics = httpx.get(running.health + "/metrics").text
    assert "pyingress_route_table_reloads_total" in metrics


def test_hot_reload_under_load_fails_no_request(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    backends = {name: echo(name) for name in ("steady", "extra")}
    write_apps(tmp_path, backends)
    steady = host_ingress("steady", "steady.example", path("/", "steady"))
    write_manifests(tmp_path / "routes.yaml", ingress_class(), steady)
    churn = tmp_path / "churn.yaml"
    running = serve(tmp_path)

    statuses: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=running.url, headers={"Host": "steady.example"}) as session:
            for _ in range(20_000):
                if stop.is_set():
                    break
                try:
                    response = session.get("/", timeout=10)
                    statuses.append(response.status_code)
                    if response.status_code != 200 or response.json()["name"] != "steady":
                        failures.append(f"{response.status_code} {response.text[:80]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        # Each rewrite adds another Ingress, so each one is a real reload with requests in
        # flight; waiting for it to route proves the new table is live.
        for n in range(1, 21):
            extra = host_ingress(f"extra-{n}", f"x{n}.example", path("/", "extra"))
            write_manifests(churn, extra)
            wait_until(lambda n=n: running.backend_name(f"x{n}.example") == "extra",
                       what=f"rewrite {n} live")  # fmt: skip
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures[:5]
    assert statuses, "the client sent no request"
    print(f"20 reloads during {len(statuses)} requests")


def test_health_ready_and_metrics(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    write_apps(tmp_path, {"web": echo("web")})
    write_manifests(tmp_path / "i.yaml", ingress_class(), catch_all("fallback", "web"))
    running = serve(tmp_path)
    assert httpx.get(running.health + "/healthz").status_code == 200
    assert httpx.get(running.health + "/readyz").text.strip() == "ready"
    assert running.backend_name("anything.example", "/any/path") == "web"
    metrics = httpx.get(running.health + "/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    for name in (
        'pyingress_route_table_reloads_total{result="success"}',
        "pyingress_route_table_reload_duration_seconds_bucket",
        'pyingress_route_table_problems{severity="error"} 0.0',
        "pyingress_route_table_routes 1.0",
        "process_resident_memory_bytes",
        "pyingress_requests_total",
    ):
        assert name in text, name


def test_problems_are_logged_and_counted(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    write_apps(tmp_path, {"web": echo("web")})
    write_manifests(
        tmp_path / "i.yaml",
        ingress_class(),
        host_ingress("good", "good.example", path("/", "web")),
        host_ingress("missing", "missing.example", path("/", "nope")),
    )
    running = serve(tmp_path)
    assert "ServiceNotFound" in running.process.output
    text = httpx.get(running.health + "/metrics").text
    assert 'pyingress_route_table_problems{severity="error"} 0.0' not in text
    assert running.get("missing.example").status_code == 503
    assert running.backend_name("good.example") == "web"

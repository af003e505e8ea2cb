"""Traffic annotations end to end: ``pyingress serve --manifests`` in front of ``pyingress echo``.

One proxy and three echo backends serve every test in this module (each test has its own
hosts), so the suite stays fast on a shared machine.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import manifests as m
from tests.support.net import free_port, wait_until
from tests.support.processes import ManagedProcess, pyingress, serve_manifests
from tests.traffic.conftest import nginx

Obj = dict[str, Any]


@dataclass
class Stack:
    url: str
    folder: Path
    ports: dict[str, int]
    dead_port: int
    objects: list[Obj]
    client: httpx.Client

    def request(self, method: str, host: str, target: str = "/", **kwargs: Any) -> httpx.Response:
        headers = {"Host": host, **kwargs.pop("headers", {})}
        response = self.client.request(method, self.url + target, headers=headers, **kwargs)
        self.client.cookies.clear()  # each request says its own cookies
        return response

    def get(self, host: str, target: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("GET", host, target, **kwargs)

    def write(self, *extra: Obj) -> None:
        m.write_manifests(self.folder / "objects.yaml", *self.objects, *extra)


def svc(name: str, *ports: int, cluster_ip: str | None = None, service_port: int = 80) -> list[Obj]:
    service = m.service(name, [{"name": "http", "port": service_port}])
    if cluster_ip:
        service["spec"]["clusterIP"] = cluster_ip
    return [service, *(m.endpoint_slice(name, ["127.0.0.1"], port, name=f"{name}-{port}")
                       for port in ports)]


def ing(name: str, host: str, service: str, annotations: dict[str, str] | None = None,
        path: str = "/", path_type: str = "Prefix", created: str | None = None,
        port: int = 80) -> Obj:
    return m.ingress(name, [m.rule(host, m.path(path, service, path_type, port=port))],
                     annotations=annotations, created=created, class_name=None)


def objects_for(ports: dict[str, int], dead: int) -> list[Obj]:
    a, b = ports["a"], ports["b"]
    headers = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "security", "namespace": "default"},
               "data": {"X-Frame-Options": "DENY"}}
    return [
        headers,
        *svc("stable", a), *svc("preview", b), *svc("pair", a, b), *svc("flaky", dead, a),
        *svc("direct", dead, cluster_ip="127.0.0.1", service_port=a),
        ing("main", "canary.test", "stable", created="2024-01-01T00:00:00Z"),
        ing("canary", "canary.test", "preview", nginx(canary="true", canary_weight="30",
                                                       canary_by_header="X-Canary")),
        ing("sticky", "sticky.test", "pair", nginx(affinity="cookie")),
        ing("body", "body.test", "stable", nginx(proxy_body_size="1k")),
        ing("limit", "limit.test", "stable", nginx(limit_rps="1", limit_burst_multiplier="2")),
        ing("retry", "retry.test", "flaky"),
        ing("moved", "moved.test", "stable", nginx(permanent_redirect="https://new.test/x")),
        ing("approot", "approot.test", "stable", nginx(app_root="/app1")),
        ing("www", "www.site.test", "stable", nginx(from_to_www_redirect="true")),
        ing("rewrite", "rewrite.test", "stable",
            nginx(rewrite_target="/$2", x_forwarded_prefix="/api", upstream_vhost="inside.svc"),
            path="/api(/|$)(.*)", path_type="ImplementationSpecific"),
        ing("cors", "cors.test", "stable",
            nginx(enable_cors="true", cors_allow_origin="https://*.cors.test", custom_headers="security")),
        ing("hash", "hash.test", "pair", nginx(upstream_hash_by="$http_x_user", load_balance="ewma")),
        ing("direct", "direct.test", "direct", nginx(service_upstream="true"), port=a),
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("traffic-e2e")
    processes: list[ManagedProcess] = []
    try:
        ports = {}
        for name in ("a", "b", "c"):
            ports[name] = free_port()
            processes.append(pyingress("echo", "--port", str(ports[name]), "--name", name))
            processes[-1].wait_for_port(ports[name])
        dead = free_port()
        objects = objects_for(ports, dead)
        running = Stack("", folder, ports, dead, objects, httpx.Client(timeout=10))
        running.write()
        served = serve_manifests(folder)
        processes.append(served.process)
        running.url = f"http://127.0.0.1:{served.http_port}"
        with running.client:
            yield running
    finally:
        for process in processes:
            process.stop()


def name_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def test_canary_weight_30_splits_1000_requests_within_binomial_bounds(stack: Stack) -> None:
    counts = Counter(name_of(stack.get("canary.test")) for _ in range(1000))
    assert set(counts) == {"a", "b"}
    assert 240 <= counts["b"] <= 360, counts
    forced = {name_of(stack.get("canary.test", headers={"X-Canary": "always"})) for _ in range(20)}
    assert forced == {"b"}
    never = {name_of(stack.get("canary.test", headers={"X-Canary": "never"})) for _ in range(20)}
    assert never == {"a"}


def test_sticky_cookie_keeps_a_client_on_its_endpoint_while_one_is_added(stack: Stack) -> None:
    first = stack.get("sticky.test")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("INGRESSCOOKIE=") and "HttpOnly" in cookie
    pinned = name_of(first)
    value = cookie.split(";")[0]
    assert {name_of(stack.get("sticky.test", headers={"Cookie": value})) for _ in range(20)} == {pinned}
    grown = [obj for obj in stack.objects]
    grown += [m.endpoint_slice("pair", ["127.0.0.1"], stack.ports["c"], name="pair-c")]
    stack.write(grown[-1])
    try:
        wait_until(lambda: "c" in {name_of(stack.get("sticky.test")) for _ in range(6)},
                   what="the new endpoint to take requests")
        with_cookie = {name_of(stack.get("sticky.test", headers={"Cookie": value})) for _ in range(30)}
        assert with_cookie == {pinned}
    finally:
        stack.write()
        # The next tests share the "pair" Service: they must not start during the reload.
        wait_until(lambda: "c" not in {name_of(stack.get("sticky.test")) for _ in range(12)},
                   what="the added endpoint to be gone again")


def test_body_size_413_up_front_and_mid_stream_for_chunked_uploads(stack: Stack) -> None:
    assert stack.request("POST", "body.test", content=b"x" * 1000).status_code == 200
    assert stack.request("POST", "body.test", content=b"x" * 2000).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 512

    response = stack.request("POST", "body.test", content=chunks())
    assert response.status_code == 413
    small = stack.request("POST", "body.test", content=iter([b"z" * 100, b"z" * 100]))
    assert small.status_code == 200


def test_rate_limit_answers_503_with_retry_after(stack: Stack) -> None:
    statuses = [stack.get("limit.test") for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 503]
    assert statuses[0].status_code == 200 and limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1


def test_refused_endpoint_is_retried_on_another(stack: Stack) -> None:
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", stack.dead_port)) != 0
    assert {name_of(stack.get("retry.test")) for _ in range(20)} == {"a"}
    assert name_of(stack.request("POST", "retry.test", content=b"payload")) == "a"


def test_redirects(stack: Stack) -> None:
    moved = stack.get("moved.test", "/anything")
    assert (moved.status_code, moved.headers["location"]) == (301, "https://new.test/x")
    root = stack.get("approot.test")
    assert root.status_code == 302 and root.headers["location"].endswith("approot.test/app1")
    assert name_of(stack.get("approot.test", "/app1")) == "a"
    www = stack.get("site.test", "/page?q=1")
    assert (www.status_code, www.headers["location"]) == (308, "http://www.site.test/page?q=1")
    assert name_of(stack.get("www.site.test")) == "a"


def test_rewrite_target_prefix_and_vhost(stack: Stack) -> None:
    seen = stack.get("rewrite.test", "/api/users?id=7").json()
    assert seen["path"] == "/users"
    assert seen["query"] in ("id=7", {"id": "7"}, {"id": ["7"]})
    assert seen["headers"]["x-forwarded-prefix"] == "/api"
    assert seen["headers"]["host"] == "inside.svc"


def test_cors_preflight_response_headers_and_custom_headers(stack: Stack) -> None:
    origin = {"Origin": "https://app.cors.test", "Access-Control-Request-Method": "PUT"}
    preflight = stack.request("OPTIONS", "cors.test", headers=origin)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.cors.test"
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    plain = stack.get("cors.test", headers={"Origin": "https://app.cors.test"})
    assert plain.headers["access-control-allow-origin"] == "https://app.cors.test"
    assert plain.headers["x-frame-options"] == "DENY"
    foreign = stack.get("cors.test", headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in foreign.headers


def test_hash_by_header_pins_each_user(stack: Stack) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        names = {name_of(stack.get("hash.test", headers={"X-User": user})) for _ in range(10)}
        assert len(names) == 1


def test_service_upstream_goes_to_the_cluster_ip(stack: Stack) -> None:
    assert {name_of(stack.get("direct.test")) for _ in range(5)} == {"a"}

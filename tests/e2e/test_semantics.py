"""Every Ingress rule of the compiler, end to end: ``pyingress serve`` on manifests, real sockets.

One ``serve`` process and a handful of ``pyingress echo`` backends; each case gets its own host so
the cases cannot interfere. The unit tests in ``tests/routing`` pin the same rules down in the
compiler; these prove the running proxy applies them to real requests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Echo, Serve, app_objects
from tests.routing.test_compiler import DOCS_TABLE
from tests.support.manifests import (
    backend,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    write_manifests,
)

BACKENDS = ["svc-a", "svc-b", "svc-c", "svc-d", "default-svc"]
OLD, NEW = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"


def docs_table_ingresses() -> tuple[list[dict], list[tuple[str, str, str | None]]]:
    """One Ingress per docs row, and (host, request path, expected backend) per row."""
    objects, cases = [], []
    for row, rules, request_path, expected in DOCS_TABLE:
        host = f"row-{row}.docs.example"
        paths = [path(p, BACKENDS[i % 4], t) for i, (p, t) in enumerate(rules)]
        objects.append(ingress(f"docs-{row}", [rule(host, *paths)]))
        want = None
        if expected is not None:
            want_path, _, want_type = expected.partition(" ")
            index = next(
                i for i, (p, t) in enumerate(rules)
                if p == want_path and (not want_type or t == want_type)
            )  # fmt: skip
            want = BACKENDS[index % 4]
        cases.append((host, request_path, want))
    return objects, cases


def test_every_rule_end_to_end(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    ports = {name: echo(name).port for name in BACKENDS}
    objects: list[dict] = [ingress_class(), ingress_class("nginx", "k8s.io/ingress-nginx")]
    for name, port in ports.items():
        objects.extend(app_objects(name, port))
    docs_objects, cases = docs_table_ingresses()
    objects.extend(docs_objects)
    objects.extend(precedence_ingresses(ports))
    write_manifests(tmp_path / "world.yaml", *objects)
    running = serve(tmp_path)

    failures = []
    for host, request_path, want in [*cases, *PRECEDENCE_CASES]:
        got = running.backend_name(host, request_path)
        if got != want:
            failures.append(f"{host}{request_path}: expected {want}, got {got}")
    assert failures == []

    missing = running.get("missing-svc.example", "/")
    assert missing.status_code == 503 and "does not exist" in missing.text
    not_ready = running.get("not-ready.example", "/")
    assert not_ready.status_code == 503 and "no ready endpoints" in not_ready.text


def precedence_ingresses(ports: dict[str, int]) -> list[dict]:
    return [
        # Hosts: exact beats wildcard beats host-less; wildcard is one label; case, port and
        # trailing dot are ignored.
        ingress("wild", [rule("*.prec.example", path("/", "svc-a"))]),
        ingress("exact", [rule("www.prec.example", path("/", "svc-b"))]),
        ingress("hostless", [rule(None, path("/hostless", "svc-c"))]),
        # The oldest Ingress keeps a contested path; the newer one is ignored there.
        ingress("newer", [rule("conflict.example", path("/x", "svc-a"))], created=NEW),
        ingress("older", [rule("conflict.example", path("/x", "svc-b"))], created=OLD),
        # An Ingress's own defaultBackend catches its hosts' unmatched paths.
        ingress(
            "with-default",
            [rule("own-default.example", path("/app", "svc-a"))],
            default_backend=backend("svc-d"),
        ),  # fmt: skip
        # The cluster-wide catch-all: an Ingress with only a defaultBackend.
        ingress("catch-all", default_backend=backend("default-svc")),
        # Classes: a class that does not exist, another controller's class, the legacy
        # annotation naming another class: never served. The legacy annotation naming ours is.
        ingress("ghost", [rule("ghost-class.example", path("/", "svc-a"))], class_name="nope"),
        ingress("theirs", [rule("their-class.example", path("/", "svc-a"))], class_name="nginx"),
        ingress(
            "legacy-nginx",
            [rule("legacy-nginx.example", path("/", "svc-a"))],
            class_name=None,
            annotations={"kubernetes.io/ingress.class": "nginx"},
        ),  # fmt: skip
        ingress(
            "legacy-ours",
            [rule("legacy-ours.example", path("/", "svc-c"))],
            class_name=None,
            annotations={"kubernetes.io/ingress.class": "pyingress"},
        ),  # fmt: skip
        # Ports by name and by number; an ExternalName Service.
        service("named", [{"name": "web", "port": 8000}]),
        endpoint_slice("named", ["127.0.0.1"], ports["svc-d"], port_name="web"),
        ingress("by-name", [rule("port-name.example", path("/", "named", port="web"))]),
        ingress("by-number", [rule("port-number.example", path("/", "named", port=8000))]),
        service("outside", [{"port": ports["svc-b"]}], external_name="localhost"),
        ingress(
            "external", [rule("external-name.example", path("/", "outside", port=ports["svc-b"]))]
        ),
        # A missing Service and a Service without ready endpoints answer 503.
        ingress("missing", [rule("missing-svc.example", path("/", "not-there"))]),
        service("idle", [{"name": "http", "port": 80}]),
        endpoint_slice("idle", ["127.0.0.1"], ports["svc-a"], not_ready=("127.0.0.1",)),
        ingress("idle", [rule("not-ready.example", path("/", "idle"))]),
        # An invalid Ingress is skipped without touching the others.
        ingress("invalid", [rule("invalid.example", path("no-slash", "svc-a"))]),
    ]


PRECEDENCE_CASES: list[tuple[str, str, str | None]] = [
    ("www.prec.example", "/", "svc-b"),
    ("WWW.Prec.Example:8080", "/", "svc-b"),
    ("www.prec.example.", "/", "svc-b"),
    ("api.prec.example", "/", "svc-a"),
    ("a.b.prec.example", "/hostless", "svc-c"),
    ("prec.example", "/hostless", "svc-c"),
    ("a.b.prec.example", "/", "default-svc"),
    ("conflict.example", "/x", "svc-b"),
    ("own-default.example", "/app/page", "svc-a"),
    ("own-default.example", "/elsewhere", "svc-d"),
    ("unknown.example", "/", "default-svc"),
    ("192.0.2.10", "/anything", "default-svc"),
    ("ghost-class.example", "/", "default-svc"),
    ("their-class.example", "/", "default-svc"),
    ("legacy-nginx.example", "/", "default-svc"),
    ("legacy-ours.example", "/", "svc-c"),
    ("port-name.example", "/", "svc-d"),
    ("port-number.example", "/", "svc-d"),
    ("external-name.example", "/", "svc-b"),
    ("invalid.example", "/", "default-svc"),
]

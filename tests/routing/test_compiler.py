"""The compiler: Kubernetes Ingress v1 semantics, precedence, classes, backends and problems."""

from __future__ import annotations

import pytest

from pyingress.model import Severity, Snapshot
from pyingress.routing.compiler import CompileOptions, CompileResult, compile_routes
from pyingress.routing.table import Endpoint, PathType, Route
from tests.support.manifests import (
    backend,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
)

SERVICES = ["svc-a", "svc-b", "svc-c", "svc-d", "default-svc"]


def world(*objects: dict, services: list[str] = SERVICES, with_class: bool = True) -> Snapshot:
    base: list[dict] = [ingress_class()] if with_class else []
    for number, name in enumerate(services, start=1):
        base.append(service(name, [{"name": "http", "port": 80, "targetPort": 8080}]))
        base.append(endpoint_slice(name, [f"10.0.0.{number}"], 8080))
    return Snapshot.of([*base, *objects])


def compiled(*objects: dict, options: CompileOptions = CompileOptions(), **kwargs) -> CompileResult:
    return compile_routes(world(*objects, **kwargs), options)


def service_for(result: CompileResult, host: str, request_path: str) -> str | None:
    route = result.table.match(host, request_path)
    return None if route is None else route.backend.service.split("/")[1].split(":")[0]


# Every row of the path-matching examples table of the Kubernetes Ingress docs.
DOCS_TABLE = [
    (1, [("/", "Prefix")], "/anything/at/all", "/"),
    (2, [("/foo", "Exact")], "/foo", "/foo"),
    (3, [("/foo", "Exact")], "/bar", None),
    (4, [("/foo", "Exact")], "/foo/", None),
    (5, [("/foo/", "Exact")], "/foo", None),
    ("6a", [("/foo", "Prefix")], "/foo", "/foo"),
    ("6b", [("/foo", "Prefix")], "/foo/", "/foo"),
    ("7a", [("/foo/", "Prefix")], "/foo", "/foo/"),
    ("7b", [("/foo/", "Prefix")], "/foo/", "/foo/"),
    (8, [("/aaa/bb", "Prefix")], "/aaa/bbb", None),
    (9, [("/aaa/bbb", "Prefix")], "/aaa/bbb", "/aaa/bbb"),
    (10, [("/aaa/bbb/", "Prefix")], "/aaa/bbb", "/aaa/bbb/"),
    (11, [("/aaa/bbb", "Prefix")], "/aaa/bbb/", "/aaa/bbb"),
    (12, [("/aaa/bbb", "Prefix")], "/aaa/bbb/ccc", "/aaa/bbb"),
    (13, [("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", None),
    (14, [("/", "Prefix"), ("/aaa", "Prefix")], "/aaa/ccc", "/aaa"),
    (15, [("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")], "/aaa/bbb", "/aaa/bbb"),
    (16, [("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")], "/ccc", "/"),
    (17, [("/aaa", "Prefix")], "/ccc", None),
    (18, [("/foo", "Prefix"), ("/foo", "Exact")], "/foo", "/foo Exact"),
]


@pytest.mark.parametrize(("row", "rules", "request_path", "expected"), DOCS_TABLE, ids=lambda v: str(v))
def test_kubernetes_docs_path_examples(row, rules, request_path, expected) -> None:
    paths = [path(p, SERVICES[i % 4], t) for i, (p, t) in enumerate(rules)]
    result = compiled(ingress("docs", [rule("example.com", *paths)]))
    assert result.problems == []
    route = result.table.match("example.com", request_path)
    if expected is None:
        assert route is None
        return
    assert route is not None
    want_path, _, want_type = expected.partition(" ")
    assert route.path == want_path
    if want_type:
        assert route.path_type is PathType(want_type)


def test_row_17_unmatched_path_goes_to_the_ingress_default_backend() -> None:
    result = compiled(
        ingress("app", [rule("example.com", path("/aaa", "svc-a"))], default_backend=backend("svc-b"))
    )
    assert service_for(result, "example.com", "/ccc") == "svc-b"
    assert service_for(result, "example.com", "/aaa/x") == "svc-a"


def test_exact_beats_a_longer_looking_prefix_for_the_same_request() -> None:
    result = compiled(
        ingress("i", [rule("h", path("/foo", "svc-a", "Exact"), path("/foo/", "svc-b", "Prefix"))])
    )
    assert service_for(result, "h", "/foo") == "svc-a"
    assert service_for(result, "h", "/foo/") == "svc-b"
    assert service_for(result, "h", "/foo/x") == "svc-b"


def test_longest_prefix_wins_across_ingresses() -> None:
    result = compiled(
        ingress("short", [rule("h", path("/api", "svc-a"))]),
        ingress("long", [rule("h", path("/api/v2", "svc-b"))]),
    )
    assert service_for(result, "h", "/api/v2/users") == "svc-b"
    assert service_for(result, "h", "/api/v1/users") == "svc-a"


def test_implementation_specific_is_prefix_and_empty_path_is_root() -> None:
    result = compiled(
        ingress("i", [rule("h", path("/docs", "svc-a", "ImplementationSpecific"),
                           path(None, "svc-b", "ImplementationSpecific"))])
    )
    assert result.problems == []
    assert service_for(result, "h", "/docs/x") == "svc-a"
    assert service_for(result, "h", "/docsx") == "svc-b"


def test_paths_are_case_sensitive() -> None:
    result = compiled(ingress("i", [rule("h", path("/Foo", "svc-a", "Exact"))]))
    assert service_for(result, "h", "/Foo") == "svc-a"
    assert service_for(result, "h", "/foo") is None


@pytest.mark.parametrize(
    ("request_host", "expected"),
    [
        ("example.com", "svc-a"),
        ("EXAMPLE.COM", "svc-a"),
        ("Example.Com:8080", "svc-a"),
        ("example.com.", "svc-a"),
        ("example.com.:443", "svc-a"),
        ("bar.foo.com", "svc-b"),
        ("BAR.foo.com:80", "svc-b"),
        ("baz.bar.foo.com", "svc-c"),
        ("foo.com", "svc-c"),
        ("192.0.2.1", "svc-c"),
        ("[2001:db8::1]:80", "svc-c"),
        ("", "svc-c"),
    ],
)
def test_host_matching_and_normalisation(request_host: str, expected: str) -> None:
    result = compiled(
        ingress("exact", [rule("Example.COM.", path("/", "svc-a"))]),
        ingress("wild", [rule("*.foo.com", path("/", "svc-b"))]),
        ingress("any", [rule(None, path("/", "svc-c"))]),
    )
    assert result.problems == []
    assert service_for(result, request_host, "/") == expected


def test_exact_host_beats_wildcard_and_wildcard_beats_hostless() -> None:
    result = compiled(
        ingress("a", [rule("*.foo.com", path("/", "svc-a"))]),
        ingress("b", [rule("bar.foo.com", path("/", "svc-b"))]),
        ingress("c", [rule(None, path("/", "svc-c"))]),
    )
    assert service_for(result, "bar.foo.com", "/") == "svc-b"
    assert service_for(result, "qux.foo.com", "/") == "svc-a"
    assert service_for(result, "other.org", "/") == "svc-c"


def test_exact_host_without_matching_path_does_not_fall_through_to_wildcard() -> None:
    """As in nginx, the host picks the server; an unmatched path there is a 404."""
    result = compiled(
        ingress("a", [rule("*.foo.com", path("/", "svc-a"))]),
        ingress("b", [rule("bar.foo.com", path("/only", "svc-b"))]),
    )
    assert service_for(result, "bar.foo.com", "/elsewhere") is None


def test_oldest_ingress_wins_a_conflict_and_the_newer_one_is_warned() -> None:
    result = compiled(
        ingress("newer", [rule("h", path("/x", "svc-a"))], created="2026-02-01T00:00:00Z"),
        ingress("older", [rule("h", path("/x", "svc-b"))], created="2026-01-01T00:00:00Z"),
    )
    assert service_for(result, "h", "/x") == "svc-b"
    [problem] = result.problems
    assert problem.ref.name == "newer" and problem.reason == "RouteConflict"
    assert problem.severity is Severity.WARNING
    assert "default/older" in problem.message


def test_conflict_between_equal_ages_is_broken_by_namespace_then_name() -> None:
    same = "2026-01-01T00:00:00Z"
    result = compiled(
        ingress("b", [rule("h", path("/x", "svc-a"))], created=same),
        ingress("a", [rule("h", path("/x", "svc-b"))], created=same),
    )
    assert service_for(result, "h", "/x") == "svc-b"


def test_exact_and_prefix_of_the_same_path_do_not_conflict() -> None:
    result = compiled(
        ingress("a", [rule("h", path("/x", "svc-a", "Exact"))]),
        ingress("b", [rule("h", path("/x", "svc-b", "Prefix"))]),
    )
    assert result.problems == []
    assert service_for(result, "h", "/x") == "svc-a"
    assert service_for(result, "h", "/x/y") == "svc-b"


def test_ingress_with_only_a_default_backend_catches_every_host() -> None:
    result = compiled(
        ingress("catch-all", default_backend=backend("default-svc")),
        ingress("app", [rule("app.example.com", path("/", "svc-a"))]),
    )
    assert result.problems == []
    assert service_for(result, "unknown.example.org", "/x") == "default-svc"
    assert service_for(result, "10.1.2.3", "/") == "default-svc"
    assert service_for(result, "app.example.com", "/") == "svc-a"


def test_hostless_rules_fall_back_to_the_catch_all() -> None:
    result = compiled(
        ingress("catch-all", default_backend=backend("default-svc")),
        ingress("api", [rule(None, path("/api", "svc-a"))]),
    )
    assert service_for(result, "x", "/api") == "svc-a"
    assert service_for(result, "x", "/other") == "default-svc"


def test_ingress_default_backend_only_covers_its_own_hosts() -> None:
    result = compiled(
        ingress("a", [rule("a.example.com", path("/x", "svc-a"))], default_backend=backend("svc-b")),
        ingress("c", [rule("c.example.com", path("/x", "svc-c"))]),
    )
    assert service_for(result, "a.example.com", "/y") == "svc-b"
    assert service_for(result, "c.example.com", "/y") is None
    assert service_for(result, "z.example.com", "/x") is None


def test_rule_without_http_sends_the_host_to_the_default_backend() -> None:
    result = compiled(
        ingress("a", [{"host": "static.example.com"}], default_backend=backend("svc-d"))
    )
    assert service_for(result, "static.example.com", "/anything") == "svc-d"


def test_second_catch_all_is_a_conflict() -> None:
    result = compiled(
        ingress("first", default_backend=backend("svc-a"), created="2026-01-01T00:00:00Z"),
        ingress("second", default_backend=backend("svc-b"), created="2026-01-02T00:00:00Z"),
    )
    assert service_for(result, "any", "/") == "svc-a"
    assert [(p.ref.name, p.reason) for p in result.problems] == [("second", "RouteConflict")]


def test_no_route_when_nothing_matches() -> None:
    result = compiled(ingress("a", [rule("a.example.com", path("/", "svc-a"))]))
    assert result.table.match("b.example.com", "/") is None


# IngressClass ownership ------------------------------------------------------------------------


def test_ingress_class_name_must_exist_and_be_ours() -> None:
    result = compiled(
        ingress("ours", [rule("ours", path("/", "svc-a"))], class_name="pyingress"),
        ingress("missing", [rule("missing", path("/", "svc-a"))], class_name="does-not-exist"),
        ingress("theirs", [rule("theirs", path("/", "svc-a"))], class_name="nginx"),
        ingress_class("nginx", controller="k8s.io/ingress-nginx"),
    )
    assert service_for(result, "ours", "/") == "svc-a"
    assert result.table.match("missing", "/") is None
    assert result.table.match("theirs", "/") is None
    assert {ref.name for ref in result.table.served} == {"ours"}


def test_class_named_differently_but_with_our_controller_is_ours() -> None:
    result = compiled(
        ingress("a", [rule("a", path("/", "svc-a"))], class_name="lan"),
        ingress_class("lan"),
    )
    assert service_for(result, "a", "/") == "svc-a"


def test_legacy_class_annotation() -> None:
    legacy = "kubernetes.io/ingress.class"
    result = compiled(
        ingress("a", [rule("a", path("/", "svc-a"))], class_name=None, annotations={legacy: "pyingress"}),
        ingress("b", [rule("b", path("/", "svc-a"))], class_name=None, annotations={legacy: "nginx"}),
    )
    assert service_for(result, "a", "/") == "svc-a"
    assert result.table.match("b", "/") is None


def test_classless_ingress_needs_the_flag_or_a_default_class() -> None:
    classless = ingress("a", [rule("a", path("/", "svc-a"))], class_name=None)
    assert compiled(classless).table.match("a", "/") is None
    flagged = compiled(classless, options=CompileOptions(watch_ingress_without_class=True))
    assert service_for(flagged, "a", "/") == "svc-a"
    with_default = compile_routes(
        Snapshot.of([ingress_class(default=True), service("svc-a"),
                     endpoint_slice("svc-a", ["10.0.0.1"], 8080), classless])
    )
    assert service_for(with_default, "a", "/") == "svc-a"


def test_ingress_class_name_wins_over_the_legacy_annotation() -> None:
    result = compiled(
        ingress("a", [rule("a", path("/", "svc-a"))], class_name="nginx",
                annotations={"kubernetes.io/ingress.class": "pyingress"}),
    )
    assert result.table.match("a", "/") is None


def test_namespace_option_limits_the_ingresses() -> None:
    objects = [
        ingress("a", [rule("a", path("/", "svc-a"))], namespace="default"),
        ingress("b", [rule("b", path("/", "svc-a"))], namespace="other"),
    ]
    result = compiled(*objects, options=CompileOptions(namespace="default"))
    assert result.table.match("a", "/") is not None
    assert result.table.match("b", "/") is None


# Backends --------------------------------------------------------------------------------------


def test_numbered_and_named_service_ports_resolve_to_target_ports() -> None:
    snapshot = Snapshot.of([
        ingress_class(),
        service("web", [{"name": "http", "port": 80, "targetPort": 8080},
                        {"name": "admin", "port": 9000, "targetPort": "admin"}]),
        {**endpoint_slice("web", ["10.0.0.1", "10.0.0.2"], 8080), "ports": [
            {"name": "http", "port": 8080}]},
        {**endpoint_slice("web", ["10.0.0.1", "10.0.0.2"], 9901, port_name="admin", name="web-admin")},
        ingress("a", [rule("h", path("/", "web", port=80), path("/admin", "web", port="admin"))]),
    ])
    result = compile_routes(snapshot)
    assert result.problems == []
    main = result.table.match("h", "/")
    admin = result.table.match("h", "/admin")
    assert main is not None and admin is not None
    assert main.backend.endpoints == (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080))
    assert admin.backend.endpoints == (Endpoint("10.0.0.1", 9901), Endpoint("10.0.0.2", 9901))


def test_only_ready_endpoints_are_used_and_slices_are_merged() -> None:
    snapshot = Snapshot.of([
        ingress_class(), service("web"),
        endpoint_slice("web", ["10.0.0.1", "10.0.0.2"], 8080, not_ready=("10.0.0.2",), name="web-1"),
        endpoint_slice("web", ["10.0.0.3"], 8080, name="web-2"),
        ingress("a", [rule("h", path("/", "web"))]),
    ])
    route = compile_routes(snapshot).table.match("h", "/")
    assert route is not None
    assert route.backend.endpoints == (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.3", 8080))


def test_legacy_endpoints_are_used_when_there_are_no_slices() -> None:
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                 "subsets": [{"addresses": [{"ip": "10.0.0.9"}],
                              "notReadyAddresses": [{"ip": "10.0.0.8"}],
                              "ports": [{"name": "http", "port": 8080}]}]}
    snapshot = Snapshot.of([ingress_class(), service("web"), endpoints,
                            ingress("a", [rule("h", path("/", "web"))])])
    route = compile_routes(snapshot).table.match("h", "/")
    assert route is not None and route.backend.endpoints == (Endpoint("10.0.0.9", 8080),)


def test_service_without_ready_endpoints_routes_to_503_with_a_reason() -> None:
    snapshot = Snapshot.of([ingress_class(), service("web"),
                            endpoint_slice("web", ["10.0.0.1"], 8080, not_ready=("10.0.0.1",)),
                            ingress("a", [rule("h", path("/", "web"))])])
    result = compile_routes(snapshot)
    route = result.table.match("h", "/")
    assert route is not None and route.backend.endpoints == ()
    assert "no ready endpoints" in route.backend.unavailable
    assert result.problems == []


def test_external_name_service() -> None:
    snapshot = Snapshot.of([ingress_class(),
                            service("ext", [{"port": 443}], external_name="backend.example.net"),
                            ingress("a", [rule("h", path("/", "ext", port=443))])])
    route = compile_routes(snapshot).table.match("h", "/")
    assert route is not None and route.backend.endpoints == (Endpoint("backend.example.net", 443),)


def test_missing_service_is_reported_and_answers_503_without_stealing_the_path() -> None:
    result = compiled(
        ingress("a", [rule("h", path("/", "svc-a"), path("/new", "not-yet"))]),
    )
    [problem] = result.problems
    assert (problem.ref.name, problem.reason) == ("a", "ServiceNotFound")
    route = result.table.match("h", "/new/page")
    assert route is not None and route.path == "/new" and route.backend.endpoints == ()
    assert service_for(result, "h", "/other") == "svc-a"


def test_missing_service_port_is_reported() -> None:
    result = compiled(ingress("a", [rule("h", path("/", "svc-a", port=81))]))
    assert [p.reason for p in result.problems] == ["ServicePortNotFound"]


def test_resource_backend_is_a_warning_and_503() -> None:
    item = {"path": "/bucket", "pathType": "Prefix",
            "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "b"}}}
    result = compiled(ingress("a", [rule("h", item, path("/", "svc-a"))]))
    [problem] = result.problems
    assert problem.reason == "ResourceBackendUnsupported" and problem.severity is Severity.WARNING
    route = result.table.match("h", "/bucket")
    assert route is not None and route.backend.endpoints == ()


# Invalid Ingresses are reported and skipped; the others still compile ------------------------

INVALID = [
    ("InvalidPathType", rule("h", path("/x", "svc-a", "Regex"))),
    ("InvalidPathType", rule("h", path("/x", "svc-a", None))),
    ("InvalidPath", rule("h", path("x", "svc-a"))),
    ("InvalidPath", rule("h", path("/a//b", "svc-a"))),
    ("InvalidPath", rule("h", path("/a/../b", "svc-a", "Exact"))),
    ("InvalidPath", rule("h", path("/a/%2fb", "svc-a"))),
    ("InvalidPath", rule("h", path("/a/..", "svc-a"))),
    ("InvalidHost", rule("h:8080", path("/", "svc-a"))),
    ("InvalidHost", rule("10.0.0.1", path("/", "svc-a"))),
    ("InvalidHost", rule("*", path("/", "svc-a"))),
    ("InvalidHost", rule("foo.*.com", path("/", "svc-a"))),
    ("InvalidHost", rule("under_score.com", path("/", "svc-a"))),
    ("InvalidBackend", rule("h", {"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": "svc-a", "port": {}}}})),
    ("InvalidBackend", rule("h", {"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": "svc-a",
                                                          "port": {"number": 80, "name": "http"}}}})),
    ("InvalidBackend", rule("h", {"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": "svc-a", "port": {"number": 70000}}}})),
    ("InvalidBackend", rule("h", {"path": "/", "pathType": "Prefix"})),
]


@pytest.mark.parametrize(("reason", "bad_rule"), INVALID, ids=[f"{r}-{i}" for i, (r, _) in enumerate(INVALID)])
def test_invalid_ingress_is_reported_and_skipped_others_compile(reason: str, bad_rule: dict) -> None:
    result = compiled(
        ingress("bad", [rule("bad.example.com", path("/ok", "svc-b")), bad_rule]),
        ingress("good", [rule("good.example.com", path("/", "svc-a"))]),
    )
    assert [(p.ref.name, p.reason) for p in result.problems] == [("bad", reason)]
    assert result.problems[0].severity is Severity.ERROR
    assert service_for(result, "good.example.com", "/") == "svc-a"
    assert result.table.match("bad.example.com", "/ok") is None
    assert {ref.name for ref in result.table.served} == {"good"}


def test_ingress_without_rules_or_default_backend_is_reported() -> None:
    result = compiled(ingress("empty", []))
    assert [p.reason for p in result.problems] == ["NoRules"]


def test_snippet_annotations_are_refused_with_the_reason() -> None:
    result = compiled(
        ingress("snip", [rule("h", path("/", "svc-a"))],
                annotations={"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;"}),
        ingress("fine", [rule("f", path("/", "svc-a"))]),
    )
    [problem] = result.problems
    assert problem.reason == "SnippetRefused"
    assert "configuration-snippet" in problem.message and "never accepted" in problem.message
    assert result.table.match("h", "/") is None
    assert service_for(result, "f", "/") == "svc-a"


# TLS -------------------------------------------------------------------------------------------


def test_tls_hosts_are_collected_and_a_missing_secret_is_a_warning() -> None:
    result = compiled(
        ingress("a", [rule("a.example.com", path("/", "svc-a")), rule("b.example.com", path("/", "svc-a"))],
                tls=[{"hosts": ["A.example.com"], "secretName": "a-cert"}, {"secretName": "shared"}]),
    )
    assert set(result.table.tls_hosts) == {"a.example.com", "b.example.com"}
    assert result.table.tls_hosts["a.example.com"].secret is not None
    assert result.table.tls_hosts["a.example.com"].secret.name == "a-cert"
    assert sorted(p.reason for p in result.problems) == ["SecretNotFound", "SecretNotFound"]
    assert all(p.severity is Severity.WARNING for p in result.problems)


def test_table_lists_every_route_once() -> None:
    result = compiled(
        ingress("a", [rule("h", path("/", "svc-a"), path("/x", "svc-b", "Exact"))],
                default_backend=backend("svc-c")),
        ingress("w", [rule("*.w.com", path("/", "svc-a"))]),
    )
    routes: list[Route] = list(result.table.routes())
    assert sorted((r.host, r.path, r.path_type.value) for r in routes) == [
        ("*.w.com", "/", "Prefix"),
        ("h", "", "DefaultBackend"),
        ("h", "/", "Prefix"),
        ("h", "/x", "Exact"),
    ]


def test_secret_that_builtin_acme_will_issue_is_not_reported_missing() -> None:
    tls = [{"hosts": ["a.example.com"], "secretName": "a-cert"}]
    acme = compiled(ingress("a", [rule("a.example.com", path("/", "svc-a"))], tls=tls,
                            annotations={"kubernetes.io/tls-acme": "true"}))  # fmt: skip
    assert acme.problems == []
    assert acme.table.tls_hosts["a.example.com"].secret is not None
    by_cert_manager = compiled(ingress(
        "b", [rule("a.example.com", path("/", "svc-a"))], tls=tls,
        annotations={"kubernetes.io/tls-acme": "true", "cert-manager.io/cluster-issuer": "le"},
    ))  # fmt: skip
    assert [p.reason for p in by_cert_manager.problems] == ["SecretNotFound"]


def test_bad_tls_annotation_skips_the_ingress_like_any_bad_annotation() -> None:
    result = compiled(
        ingress("a", [rule("a.example.com", path("/", "svc-a"))],
                annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "yes please"}),
        ingress("b", [rule("b.example.com", path("/", "svc-b"))]),
    )  # fmt: skip
    [problem] = result.problems
    assert (problem.ref.name, problem.reason) == ("a", "InvalidAnnotation")
    assert "force-ssl-redirect" in problem.message
    assert result.table.match("a.example.com", "/") is None
    assert service_for(result, "b.example.com", "/") == "svc-b"

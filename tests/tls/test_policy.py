"""HTTPS redirect and HSTS rules from annotations."""

from __future__ import annotations

import pytest

from pyingress.model import ObjectRef, Snapshot
from pyingress.policy.filters import FilterChains, RequestView
from pyingress.routing.annotations import AnnotationError, Annotations
from pyingress.routing.policy import PolicyContext
from pyingress.routing.table import Backend, PathType, Route
from pyingress.tls.filter import TLSFilterFactory
from pyingress.tls.policy import (
    DEFAULT_TLS_POLICY,
    TLSPolicy,
    hsts_header,
    parse_tls_policy,
    redirect_location,
    tls_policy,
)
from tests.support.views import request_view


def parse(values: dict[str, str]) -> TLSPolicy:
    return parse_tls_policy(Annotations(values))


def test_defaults_redirect_tls_hosts_only_and_send_hsts() -> None:
    policy = parse({})
    assert policy == DEFAULT_TLS_POLICY
    assert policy.redirects(host_has_tls=True)
    assert not policy.redirects(host_has_tls=False)
    assert hsts_header(policy) == b"max-age=31536000; includeSubDomains"


@pytest.mark.parametrize("prefix", ["pyingress.io/", "nginx.ingress.kubernetes.io/"])
def test_ssl_redirect_false_disables_and_force_enables(prefix: str) -> None:
    off = parse({prefix + "ssl-redirect": "false"})
    assert not off.redirects(host_has_tls=True)
    forced = parse({prefix + "force-ssl-redirect": "true"})
    assert forced.redirects(host_has_tls=False)


def test_native_annotation_wins_over_nginx_one() -> None:
    policy = parse(
        {"pyingress.io/ssl-redirect": "true", "nginx.ingress.kubernetes.io/ssl-redirect": "false"}
    )
    assert policy.ssl_redirect is True


def test_hsts_options() -> None:
    policy = parse(
        {
            "pyingress.io/hsts-max-age": "600",
            "pyingress.io/hsts-include-subdomains": "false",
            "pyingress.io/hsts-preload": "TRUE",
        }
    )
    assert hsts_header(policy) == b"max-age=600; preload"
    assert policy.hsts_value == b"max-age=600; preload"
    off = parse({"nginx.ingress.kubernetes.io/hsts": "false"})
    assert hsts_header(off) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("pyingress.io/ssl-redirect", "yes please"), ("nginx.ingress.kubernetes.io/hsts-max-age", "-1")],
)
def test_bad_values_raise_an_error_naming_the_annotation(key: str, value: str) -> None:
    with pytest.raises(AnnotationError) as error:
        parse({key: value})
    assert key in str(error.value) and repr(value) in str(error.value)


def test_acme_annotations() -> None:
    assert parse({"pyingress.io/acme": "true"}).acme
    assert parse({"kubernetes.io/tls-acme": "true"}).acme
    assert not parse({"pyingress.io/acme": "false"}).acme
    assert not parse({"kubernetes.io/tls-acme": "true", "cert-manager.io/issuer": "x"}).acme


@pytest.mark.parametrize(
    ("host", "target", "port", "location"),
    [
        (b"app.example.com", b"/a/b?x=1&y=%2F", 443, b"https://app.example.com/a/b?x=1&y=%2F"),
        (b"App.Example.com:8080", b"/", 443, b"https://app.example.com/"),
        (b"app.example.com", b"/p", 8443, b"https://app.example.com:8443/p"),
        (b"[::1]:80", b"/p", 443, b"https://[::1]/p"),
        (b"10.0.0.1", b"/p?q", 443, b"https://10.0.0.1/p?q"),
    ],
)
def test_redirect_location_keeps_path_and_query(
    host: bytes, target: bytes, port: int, location: bytes
) -> None:
    assert redirect_location(host, target, port) == location


@pytest.mark.parametrize(
    ("host", "target"),
    [
        (b"evil.com/x", b"/"),
        (b"user@evil.com", b"/"),
        (b"app.example.com\r\nSet-Cookie: a=b", b"/"),
        (b"", b"/"),
        (b"app.example.com", b"//evil.com/"),
        (b"app.example.com", b"http://evil.com/"),
        (b"app.example.com", b"/a\r\nX: y"),
        (b"app.example.com", b"*"),
    ],
)
def test_redirect_location_refuses_unsafe_input(host: bytes, target: bytes) -> None:
    assert redirect_location(host, target) is None


# --- the policy as the compiler builds it, and the filter that applies it ------------------


def _ingress(annotations: dict[str, str], tls: list[dict[str, object]]) -> dict[str, object]:
    return {
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {"tls": tls},
    }


def _policy_for(
    annotations: dict[str, str], tls: list[dict[str, object]]
) -> tuple[TLSPolicy, list]:
    obj = _ingress(annotations, tls)
    problems: list = []
    context = PolicyContext(ObjectRef("Ingress", "default", "web"), Snapshot.of([obj]), problems)
    return tls_policy(Annotations(annotations), context) or DEFAULT_TLS_POLICY, problems


class _Policy:
    """Stands in for RoutePolicy until it has its ``tls`` field."""

    def __init__(self, tls: TLSPolicy) -> None:
        self.tls = tls


def _view(scheme: str, host: str, target: str) -> RequestView:
    route = Route(ObjectRef("Ingress", "default", "web"), host, "/", PathType.PREFIX,
                  Backend("default/app:80", ()))  # fmt: skip
    return request_view(route, "GET", target, host, (), "127.0.0.1", scheme)


def test_policy_from_the_ingress_object() -> None:
    policy, problems = _policy_for(
        {"kubernetes.io/tls-acme": "true", "pyingress.io/hsts-preload": "true"},
        [{"hosts": ["App.Example.com"], "secretName": "app-tls"}, {"hosts": ["*.example.org"]}],
    )
    assert policy.acme and policy.hsts_preload
    assert policy.tls_hosts == {"app.example.com", "*.example.org"}
    assert policy.certificate_hosts == {"app.example.com"}
    assert problems == []


async def test_filter_redirects_http_and_adds_hsts_on_https() -> None:
    policy, _ = _policy_for({}, [{"hosts": ["app.example.com"], "secretName": "app-tls"},
                                 {"hosts": ["*.example.org"]}])  # fmt: skip
    chains = FilterChains([(10, TLSFilterFactory(https_port=8443))])
    chain = chains.chain_for(_Policy(policy))  # type: ignore[arg-type]

    reply = await chain.on_request(_view("http", "app.example.com", "/a?b=c"))
    assert reply is not None and reply.status == 308
    assert reply.headers == [(b"location", b"https://app.example.com:8443/a?b=c")]

    wildcard = await chain.on_request(_view("http", "x.example.org", "/"))
    assert wildcard is not None and wildcard.status == 308
    assert await chain.on_request(_view("http", "other.test", "/")) is None

    https = _view("https", "app.example.com", "/")
    assert await chain.on_request(https) is None
    headers: list[tuple[bytes, bytes]] = []
    chain.on_response(https, 200, headers)
    assert headers == [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")]
    # A host served with the default certificate is never pinned.
    default_cert: list[tuple[bytes, bytes]] = []
    chain.on_response(_view("https", "x.example.org", "/"), 200, default_cert)
    assert default_cert == []


async def test_no_filter_without_tls_and_force_redirect_without_tls() -> None:
    chains = FilterChains([(10, TLSFilterFactory())])
    plain, _ = _policy_for({}, [])
    assert plain is DEFAULT_TLS_POLICY  # nothing asked: the route keeps the fast path
    assert chains.chain_for(_Policy(plain)).filters == ()  # type: ignore[arg-type]
    forced, _ = _policy_for({"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}, [])
    chain = chains.chain_for(_Policy(forced))  # type: ignore[arg-type]
    reply = await chain.on_request(_view("http", "app.example.com", "/x"))
    assert reply is not None and reply.headers == [(b"location", b"https://app.example.com/x")]
    off, _ = _policy_for({"pyingress.io/ssl-redirect": "false"}, [{"hosts": ["a.test"]}])
    assert await chains.chain_for(_Policy(off)).on_request(_view("http", "a.test", "/")) is None  # type: ignore[arg-type]

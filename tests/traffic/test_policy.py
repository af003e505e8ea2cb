"""Annotation parsing: every value typed once at compile time, bad values refused clearly."""

from __future__ import annotations

import ipaddress

import pytest

from pyingress.model import ObjectRef, Snapshot
from pyingress.routing.annotations import AnnotationError, Annotations
from pyingress.routing.policy import DEFAULT_POLICY, PolicyContext, parse_policy
from pyingress.traffic.policy import TrafficPolicy, parse_traffic
from tests.traffic.conftest import nginx

REF = ObjectRef("Ingress", "default", "app")


def parse(values: dict[str, str], objects: tuple[dict[str, object], ...] = ()) -> TrafficPolicy:
    context = PolicyContext(REF, Snapshot.of(objects), [])
    policy = parse_traffic(Annotations(values), context)
    assert policy is not None
    return policy


def test_no_traffic_annotations_keeps_the_default_policy_object() -> None:
    context = PolicyContext(REF, Snapshot(), [])
    assert parse_policy(Annotations({"other/x": "1"}), context) is DEFAULT_POLICY


def test_sizes_durations_and_tries() -> None:
    policy = parse(
        nginx(
            proxy_body_size="8k",
            proxy_connect_timeout="3",
            proxy_read_timeout="2m",
            proxy_send_timeout="500ms",
            proxy_next_upstream_tries="5",
        )
    )
    assert policy.upstream.body_size == 8192
    assert policy.upstream.connect_timeout == 3.0
    assert policy.upstream.read_timeout == 120.0
    assert policy.upstream.send_timeout == 0.5
    assert policy.upstream.next_upstream_tries == 5
    assert parse(nginx(proxy_body_size="1g")).upstream.body_size == 1 << 30


def test_native_prefix_wins_over_nginx() -> None:
    values = {**nginx(proxy_body_size="1m"), "pyingress.io/proxy-body-size": "2m"}
    assert parse(values).upstream.body_size == 2 << 20


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        (nginx(proxy_body_size="ten"), "proxy-body-size"),
        (nginx(proxy_read_timeout="-1"), "proxy-read-timeout"),
        (nginx(permanent_redirect="javascript:alert(1)"), "http:// or https://"),
        (nginx(permanent_redirect="https://x/\r\nSet-Cookie: a"), "control characters"),
        (nginx(app_root="//evil.example"), "app-root"),
        (nginx(limit_rps="lots"), "limit-rps"),
        (nginx(limit_rps="5", limit_allowlist="10.0.0.0/8,nonsense"), "IP address"),
        (nginx(enable_cors="true", cors_allow_origin="evil"), "cors-allow-origin"),
        (nginx(backend_protocol="GRPC"), "only HTTP and HTTPS"),
        (nginx(load_balance="least_conn"), "round_robin, ewma"),
        (nginx(upstream_hash_by="$request_body"), "not supported"),
        (nginx(affinity="ip"), "cookie"),
        (nginx(canary="true", canary_weight="150"), "canary-weight"),
        (nginx(canary="true", canary_by_header_pattern="(unclosed"), "regular expression"),
        (nginx(permanent_redirect="https://x", permanent_redirect_code="200"), "between 300"),
        (nginx(upstream_vhost="a b"), "upstream-vhost"),
    ],
)
def test_bad_values_raise_with_the_annotation_named(values: dict[str, str], needle: str) -> None:
    with pytest.raises(AnnotationError) as info:
        parse(values)
    assert needle in str(info.value)
    assert "nginx.ingress.kubernetes.io/" in str(info.value)


def test_redirects_and_codes() -> None:
    permanent = parse(nginx(permanent_redirect="https://new.example/"))
    assert permanent.redirect is not None and permanent.redirect.code == 301
    temporal = parse(nginx(temporal_redirect="https://x.example", temporal_redirect_code="307"))
    assert temporal.redirect is not None and temporal.redirect.code == 307


def test_rewrite_target_turns_on_regex() -> None:
    policy = parse(nginx(rewrite_target="/$2"))
    assert policy.use_regex and policy.rewrite is not None and policy.rewrite.target == "/$2"


def test_cors_defaults_and_lists() -> None:
    policy = parse(nginx(enable_cors="true"))
    assert policy.cors is not None
    assert policy.cors.allow_origins == ("*",) and policy.cors.allow_credentials
    assert "PATCH" in policy.cors.allow_methods and policy.cors.max_age == 1728000
    listed = parse(
        nginx(
            enable_cors="true",
            cors_allow_origin="https://a.example, https://*.b.example:8443",
            cors_allow_methods="get, post",
            cors_allow_credentials="false",
        )
    )
    assert listed.cors is not None
    assert listed.cors.allow_origins == ("https://a.example", "https://*.b.example:8443")
    assert listed.cors.allow_methods == ("GET", "POST") and not listed.cors.allow_credentials


def test_limits_with_allowlist_and_multiplier() -> None:
    policy = parse(nginx(limit_rps="5", limit_burst_multiplier="2", limit_whitelist="10.0.0.0/8"))
    assert policy.limits is not None
    assert (policy.limits.rps, policy.limits.burst_multiplier) == (5, 2)
    assert policy.limits.allowlist == (ipaddress.ip_network("10.0.0.0/8"),)


def test_custom_headers_from_configmap_and_missing_one_is_a_warning() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hdrs", "namespace": "web"},
        "data": {"X-Frame-Options": "DENY", "Bad Name": "x"},
    }
    context = PolicyContext(REF, Snapshot.of([config_map]), [])
    policy = parse_traffic(Annotations(nginx(custom_headers="web/hdrs")), context)
    assert policy is not None and policy.response_headers == ((b"X-Frame-Options", b"DENY"),)
    assert [p.reason for p in context.problems] == ["InvalidHeader"]
    missing = PolicyContext(REF, Snapshot(), [])
    assert parse_traffic(Annotations(nginx(custom_headers="nope")), missing) is None
    assert [p.reason for p in missing.problems] == ["ConfigMapNotFound"]


def test_upstream_choices() -> None:
    policy = parse(
        nginx(
            backend_protocol="HTTPS",
            proxy_ssl_verify="true",
            proxy_ssl_name="argocd.internal",
            load_balance="ewma",
            upstream_hash_by="$http_x_user$request_uri",
            affinity="cookie",
            session_cookie_name="route",
            session_cookie_samesite="strict",
            service_upstream="true",
            ssl_passthrough="true",
        )
    )
    upstream = policy.upstream
    assert upstream.ssl is not None and upstream.ssl.verify and upstream.ssl.name == "argocd.internal"
    assert upstream.load_balance == "ewma" and upstream.service_upstream
    assert upstream.hash_by == ("$http_x_user", "$request_uri")
    assert upstream.affinity is not None and upstream.affinity.cookie_name == "route"
    assert upstream.affinity.samesite == "Strict"
    assert policy.ssl_passthrough


def test_policies_are_hashable_and_equal_by_value() -> None:
    values = nginx(enable_cors="true", limit_rps="3", canary="true", canary_by_header_pattern="^v2")
    assert hash(parse(values)) == hash(parse(values)) and parse(values) == parse(values)

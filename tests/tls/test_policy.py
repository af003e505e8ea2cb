"""HTTPS redirect and HSTS rules from annotations."""

from __future__ import annotations

import pytest

from pyingress.tls.policy import (
    DEFAULT_TLS_POLICY,
    TLSPolicy,
    hsts_header,
    parse_tls_policy,
    redirect_location,
)


def test_defaults_redirect_tls_hosts_only_and_send_hsts() -> None:
    policy, errors = parse_tls_policy({})
    assert errors == []
    assert policy == DEFAULT_TLS_POLICY
    assert policy.redirects(host_has_tls=True)
    assert not policy.redirects(host_has_tls=False)
    assert hsts_header(policy) == b"max-age=31536000; includeSubDomains"


@pytest.mark.parametrize("prefix", ["pyingress.io/", "nginx.ingress.kubernetes.io/"])
def test_ssl_redirect_false_disables_and_force_enables(prefix: str) -> None:
    off, _ = parse_tls_policy({prefix + "ssl-redirect": "false"})
    assert not off.redirects(host_has_tls=True)
    forced, _ = parse_tls_policy({prefix + "force-ssl-redirect": "true"})
    assert forced.redirects(host_has_tls=False)


def test_native_annotation_wins_over_nginx_one() -> None:
    policy, _ = parse_tls_policy(
        {"pyingress.io/ssl-redirect": "true", "nginx.ingress.kubernetes.io/ssl-redirect": "false"}
    )
    assert policy.ssl_redirect is True


def test_hsts_options() -> None:
    policy, errors = parse_tls_policy(
        {
            "pyingress.io/hsts-max-age": "600",
            "pyingress.io/hsts-include-subdomains": "false",
            "pyingress.io/hsts-preload": "TRUE",
        }
    )
    assert errors == []
    assert hsts_header(policy) == b"max-age=600; preload"
    assert policy.hsts_value == b"max-age=600; preload"
    off, _ = parse_tls_policy({"nginx.ingress.kubernetes.io/hsts": "false"})
    assert hsts_header(off) is None


def test_bad_values_are_reported_and_keep_defaults() -> None:
    policy, errors = parse_tls_policy(
        {"pyingress.io/ssl-redirect": "yes please", "pyingress.io/hsts-max-age": "-1"}
    )
    assert policy == TLSPolicy()
    assert len(errors) == 2
    text = "\n".join(errors)
    assert "pyingress.io/ssl-redirect" in text and "'yes please'" in text
    assert "hsts-max-age" in text


def test_acme_annotations() -> None:
    assert parse_tls_policy({"pyingress.io/acme": "true"})[0].acme
    assert parse_tls_policy({"kubernetes.io/tls-acme": "true"})[0].acme
    assert not parse_tls_policy({"pyingress.io/acme": "false"})[0].acme


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

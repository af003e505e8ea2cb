"""SNI certificate selection over real TLS sockets, hot reload and bad-Secret fallback."""

from __future__ import annotations

import datetime
import socket
import ssl

import pytest

from pyingress.model import ObjectRef, Severity, Snapshot
from pyingress.tls.certs import CertificateError, load_bundle, secret_material
from pyingress.tls.certstore import CertificateStore
from pyingress.tls.selfsigned import DEFAULT_COMMON_NAME
from tests.tls.conftest import (
    NOW,
    LocalCA,
    TinyTLSServer,
    client_context,
    handshake,
    peer_names,
    table_for,
    tls_secret,
)


def _store_with(ca: LocalCA) -> tuple[CertificateStore, Snapshot]:
    exact = ca.issue("app.example.com")
    wild = ca.issue("*.example.com")
    snapshot = Snapshot.of([tls_secret("app-tls", *exact), tls_secret("wild-tls", *wild)])
    store = CertificateStore()
    problems = store.update(
        snapshot, table_for({"app.example.com": "app-tls", "*.example.com": "wild-tls"})
    )
    assert problems == []
    return store, snapshot


def test_sni_selects_exact_wildcard_and_default(ca: LocalCA) -> None:
    store, _ = _store_with(ca)
    with TinyTLSServer(store.listening_context) as server:
        exact = handshake(server.port, "app.example.com", ca.pem)
        assert exact.names == {"app.example.com"}
        assert exact.alpn == "http/1.1"
        assert exact.version in {"TLSv1.2", "TLSv1.3"}
        assert handshake(server.port, "other.example.com", ca.pem).names == {"*.example.com"}
        # A wildcard covers one label only: a.b.example.com falls through to the default.
        assert handshake(server.port, "a.b.example.com").common_name == DEFAULT_COMMON_NAME
        assert handshake(server.port, "unknown.test").common_name == DEFAULT_COMMON_NAME
        assert handshake(server.port, "APP.Example.COM", ca.pem).names == {"app.example.com"}


def test_client_without_sni_gets_default(ca: LocalCA) -> None:
    store, _ = _store_with(ca)
    with TinyTLSServer(store.listening_context) as server:
        assert handshake(server.port, None).common_name == DEFAULT_COMMON_NAME


def test_only_modern_tls_1_2_suites_are_accepted(ca: LocalCA) -> None:
    store, _ = _store_with(ca)
    with TinyTLSServer(store.listening_context) as server:
        modern = client_context()
        modern.maximum_version = ssl.TLSVersion.TLSv1_2
        modern.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            modern.wrap_socket(raw, server_hostname="app.example.com") as tls,
        ):
            assert tls.version() == "TLSv1.2"
        legacy = client_context()
        legacy.maximum_version = ssl.TLSVersion.TLSv1_2
        legacy.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC without AEAD
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            pytest.raises(ssl.SSLError),
        ):
            legacy.wrap_socket(raw, server_hostname="app.example.com")


def _request(tls: ssl.SSLSocket) -> bytes:
    tls.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    data = b""
    while not data.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in data:
        data += tls.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += tls.recv(4096)
    return head.split(b"\r\n")[0]


def test_hot_swap_keeps_open_connection_and_new_handshake_sees_new_cert(ca: LocalCA) -> None:
    store, _ = _store_with(ca)
    old_chain, old_key = ca.issue("app.example.com")
    table = table_for({"app.example.com": "app-tls"})
    store.update(Snapshot.of([tls_secret("app-tls", old_chain, old_key)]), table)
    with TinyTLSServer(store.listening_context) as server:
        context = client_context(ca.pem)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="app.example.com") as kept,
        ):
            first = kept.getpeercert(binary_form=True)
            assert _request(kept) == b"HTTP/1.1 200 OK"

            new_chain, new_key = ca.issue("app.example.com", "new.example.com")
            problems = store.update(Snapshot.of([tls_secret("app-tls", new_chain, new_key)]), table)
            assert problems == []

            fresh = handshake(server.port, "app.example.com", ca.pem)
            assert fresh.names == {"app.example.com", "new.example.com"}
            # The open keep-alive connection still works, on the certificate it negotiated.
            assert _request(kept) == b"HTTP/1.1 200 OK"
            assert kept.getpeercert(binary_form=True) == first
            assert peer_names(first)[0] == {"app.example.com"}


def test_bad_secret_keeps_previous_certificate(ca: LocalCA) -> None:
    table = table_for({"app.example.com": "app-tls"})
    store = CertificateStore()
    good = ca.issue("app.example.com")
    assert store.update(Snapshot.of([tls_secret("app-tls", *good)]), table) == []
    other_key = ca.issue("x.test")[1]
    problems = store.update(Snapshot.of([tls_secret("app-tls", good[0], other_key)]), table)
    assert [(p.reason, p.severity) for p in problems] == [("InvalidCertificate", Severity.ERROR)]
    assert "does not match" in problems[0].message
    assert "previous certificate keeps serving" in problems[0].message
    assert other_key.decode() not in problems[0].message
    with TinyTLSServer(store.listening_context) as server:
        assert handshake(server.port, "app.example.com", ca.pem).names == {"app.example.com"}


def test_bad_secret_without_history_serves_default(ca: LocalCA) -> None:
    table = table_for({"app.example.com": "app-tls"})
    store = CertificateStore()
    broken = tls_secret("app-tls", b"not a certificate", b"nor a key")
    problems = store.update(Snapshot.of([broken]), table)
    assert problems[0].reason == "InvalidCertificate"
    with TinyTLSServer(store.listening_context) as server:
        assert handshake(server.port, "app.example.com").common_name == DEFAULT_COMMON_NAME


def test_missing_secret_serves_default_and_is_left_to_the_compiler(ca: LocalCA) -> None:
    store = CertificateStore()
    # The compiler reports SecretNotFound; repeating it here would double the Event.
    assert store.update(Snapshot(), table_for({"app.example.com": "gone"})) == []
    assert store.select("app.example.com") is store.default


def test_expired_and_not_yet_valid_certificates_are_refused(ca: LocalCA) -> None:
    expired = ca.issue("app.example.com", not_after=NOW - datetime.timedelta(minutes=1))
    with pytest.raises(CertificateError, match="expired"):
        load_bundle(*expired, NOW)
    future = ca.issue("app.example.com", not_before=NOW + datetime.timedelta(days=1))
    with pytest.raises(CertificateError, match="not valid before"):
        load_bundle(*future, NOW)


def test_certificate_expiring_while_cached_falls_back_to_default(ca: LocalCA) -> None:
    clock = [NOW]
    store = CertificateStore(clock=lambda: clock[0])
    table = table_for({"app.example.com": "app-tls"})
    snapshot = Snapshot.of([tls_secret("app-tls", *ca.issue("app.example.com"))])
    assert store.update(snapshot, table) == []
    clock[0] = NOW + datetime.timedelta(days=11)
    problems = store.update(snapshot, table)
    assert "expired" in problems[0].message
    assert store.select("app.example.com") is store.default


def test_name_mismatch_is_a_warning_and_still_served(ca: LocalCA) -> None:
    store = CertificateStore()
    snapshot = Snapshot.of([tls_secret("app-tls", *ca.issue("other.example.com"))])
    problems = store.update(snapshot, table_for({"app.example.com": "app-tls"}))
    assert [(p.reason, p.severity) for p in problems] == [
        ("CertificateNameMismatch", Severity.WARNING)
    ]
    assert store.select("app.example.com").names == {"other.example.com"}


def test_unchanged_secret_is_not_reloaded(ca: LocalCA) -> None:
    store = CertificateStore()
    table = table_for({"app.example.com": "app-tls"})
    snapshot = Snapshot.of([tls_secret("app-tls", *ca.issue("app.example.com"))])
    store.update(snapshot, table)
    first = store.select("app.example.com")
    store.update(Snapshot.of([*(snapshot.get("Secret", "default", "app-tls"),)]), table)
    assert store.select("app.example.com") is first
    assert store.select("app.example.com").context is first.context


def test_default_ssl_certificate_secret(ca: LocalCA) -> None:
    store = CertificateStore(default_secret=ObjectRef("Secret", "kube-system", "fallback"))
    chain, key = ca.issue("fallback.example.com")
    snapshot = Snapshot.of([tls_secret("fallback", chain, key, namespace="kube-system")])
    assert store.update(snapshot, table_for({})) == []
    with TinyTLSServer(store.listening_context) as server:
        assert handshake(server.port, None).names == {"fallback.example.com"}
        assert handshake(server.port, "nothing.test").names == {"fallback.example.com"}
    problems = store.update(Snapshot(), table_for({}))
    assert problems[0].reason == "InvalidDefaultCertificate"
    assert store.default is store.self_signed


def test_string_data_secret_from_manifests(ca: LocalCA) -> None:
    chain, key = ca.issue("app.example.com")
    secret = {
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "app-tls"},
        "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
    }
    assert secret_material(secret) == (chain, key)
    with pytest.raises(CertificateError, match=r"no tls\.key"):
        secret_material({"kind": "Secret", "stringData": {"tls.crt": "x"}})
    with pytest.raises(CertificateError, match="base64"):
        secret_material({"kind": "Secret", "data": {"tls.crt": "%%%", "tls.key": "eA=="}})

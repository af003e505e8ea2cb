"""TLS end to end through ``pyingress serve --manifests``: real processes, real TLS sockets.

The controller runs as a subprocess on free loopback ports, proxies to ``pyingress echo``
backends, and serves certificates issued by a throw-away CA made in the fixtures.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.manifests import (
    Obj,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    secret_tls,
    service,
    write_manifests,
)
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess, running_echo, serve_manifests
from tests.tls.conftest import LocalCA, client_context

pytestmark = pytest.mark.timeout(120)

EXACT = "a.example.test"
WILD = "*.wild.example.test"
NO_REDIRECT = "nr.example.test"
FORCED = "forced.example.test"
HSTS_HOST = "h.example.test"
PLAIN = "plain.example.test"


# -- a tiny blocking HTTP/1.1 client over real sockets -------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Connection:
    """One keep-alive connection, TLS (with or without SNI) or plain, from a chosen address."""

    def __init__(
        self,
        port: int,
        *,
        tls: bool = True,
        server_name: str | None = None,
        ca_pem: bytes | None = None,
        source: str = "127.0.0.1",
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        self.sock: socket.socket = raw
        if tls:
            self.sock = client_context(ca_pem).wrap_socket(raw, server_hostname=server_name)
        self._buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def certificate(self) -> x509.Certificate:
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def request(self, host: str, target: str = "/", headers: dict[str, str] | None = None
                ) -> Response:  # fmt: skip
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        length = int(parsed.get("content-length", "0"))
        while len(self._buffer) < length:
            self._read()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Response(int(status_line.split()[1]), parsed, body)

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a whole response")
        self._buffer += chunk


def fetch(port: int, host: str, target: str = "/", **options: Any) -> Response:
    headers = options.pop("headers", None)
    with Connection(port, **options) as connection:
        return connection.request(host, target, headers)


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# -- running serve ------------------------------------------------------------------------------


@dataclass
class Serve:
    process: ManagedProcess
    http_port: int
    https_port: int
    folder: Path

    def https(self, host: str, target: str = "/", server_name: str | None = "", **options: Any
              ) -> Response:  # fmt: skip
        name = host if server_name == "" else server_name
        return fetch(self.https_port, host, target, server_name=name, **options)

    def http(self, host: str, target: str = "/", **options: Any) -> Response:
        return fetch(self.http_port, host, target, tls=False, **options)

    def handshake(self, server_name: str | None, ca_pem: bytes | None = None) -> x509.Certificate:
        with Connection(self.https_port, server_name=server_name, ca_pem=ca_pem) as connection:
            return connection.certificate


def start_serve(folder: Path, *extra: str) -> Serve:
    served = serve_manifests(folder, *extra)
    return Serve(served.process, served.http_port, served.https_port, folder)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with running_echo("app") as port:
        yield port


def app_objects(echo_port: int) -> list[Obj]:
    return [
        ingress_class(),
        service("app", [{"name": "http", "port": 80}]),
        endpoint_slice("app", ["127.0.0.1"], echo_port),
    ]


def tls_ingress(name: str, host: str, secret: str | None, **annotations: str) -> Obj:
    tls = [{"hosts": [host], "secretName": secret}] if secret else None
    prefixed = {f"pyingress.io/{key.replace('_', '-')}": v for key, v in annotations.items()}
    return ingress(name, [rule(host, path("/", "app"))], tls=tls, annotations=prefixed)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, echo_port: int, ca: LocalCA) -> Iterator[Serve]:
    """One controller with an Ingress per TLS behaviour, trusting 127.0.0.1 as a proxy."""
    folder = tmp_path_factory.mktemp("site")
    write_manifests(
        folder / "site.yaml",
        *app_objects(echo_port),
        tls_ingress("exact", EXACT, "exact-tls"),
        secret_tls("exact-tls", *ca.issue(EXACT)),
        tls_ingress("wild", WILD, "wild-tls"),
        ingress("wild-rule", [rule("x.wild.example.test", path("/", "app"))]),
        secret_tls("wild-tls", *ca.issue(WILD)),
        tls_ingress("no-redirect", NO_REDIRECT, "nr-tls", ssl_redirect="false"),
        secret_tls("nr-tls", *ca.issue(NO_REDIRECT)),
        tls_ingress("forced", FORCED, None, force_ssl_redirect="true"),
        tls_ingress(
            "hsts",
            HSTS_HOST,
            "h-tls",
            hsts_max_age="600",
            hsts_include_subdomains="false",
            hsts_preload="true",
        ),
        secret_tls("h-tls", *ca.issue(HSTS_HOST)),
        tls_ingress("plain", PLAIN, None),
    )
    running = start_serve(folder, "--trusted-proxies", "127.0.0.1")
    try:
        yield running
    finally:
        running.process.stop()


# -- SNI -----------------------------------------------------------------------------------------


def test_sni_exact_name_gets_its_certificate_verified_by_the_ca(site: Serve, ca: LocalCA) -> None:
    cert = site.handshake(EXACT, ca.pem)  # verifies chain and host name
    assert cert.subject.rfc4514_string() == f"CN={EXACT}"
    response = site.https(EXACT, "/hello?x=1", ca_pem=ca.pem)
    assert response.status == 200
    echoed = response.json()
    assert (echoed["path"], echoed["query"]) == ("/hello", "x=1")
    assert echoed["headers"]["x-forwarded-proto"] == "https"


def test_sni_wildcard_covers_one_label(site: Serve, ca: LocalCA) -> None:
    cert = site.handshake("x.wild.example.test", ca.pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [WILD]
    assert site.https("x.wild.example.test", ca_pem=ca.pem).status == 200
    # Two labels deep is not covered: the default certificate answers.
    deeper = site.handshake("a.b.wild.example.test")
    assert "pyingress default certificate" in deeper.subject.rfc4514_string()


@pytest.mark.parametrize("server_name", [None, "unknown.example.test"])
def test_no_sni_and_unknown_name_get_the_default_certificate(
    site: Serve, ca: LocalCA, server_name: str | None
) -> None:
    cert = site.handshake(server_name)
    assert cert.subject.rfc4514_string() == "CN=pyingress default certificate"
    with pytest.raises(ssl.SSLCertVerificationError):
        site.handshake("unknown.example.test", ca.pem)
    # Routing is by Host, not SNI: a client without SNI still reaches the exact host's backend.
    assert site.https(EXACT, server_name=server_name).status == 200


# -- redirect and HSTS ----------------------------------------------------------------------------


def test_tls_host_redirects_to_https_keeping_path_and_query(site: Serve, ca: LocalCA) -> None:
    response = site.http(EXACT, "/some/path?q=1&x=%2F")
    assert response.status == 308
    location = response.headers["location"]
    assert location == f"https://{EXACT}:{site.https_port}/some/path?q=1&x=%2F"
    followed = site.https(EXACT, location.split(str(site.https_port), 1)[1], ca_pem=ca.pem)
    assert (followed.json()["path"], followed.json()["query"]) == ("/some/path", "q=1&x=%2F")


def test_ssl_redirect_false_serves_plain_http(site: Serve) -> None:
    response = site.http(NO_REDIRECT, "/x")
    assert response.status == 200
    assert response.json()["headers"]["x-forwarded-proto"] == "http"
    assert "strict-transport-security" not in response.headers


def test_force_ssl_redirect_without_tls_section(site: Serve) -> None:
    response = site.http(FORCED, "/p?k=v")
    assert response.status == 308
    assert response.headers["location"] == f"https://{FORCED}:{site.https_port}/p?k=v"
    # Over HTTPS it is served (default certificate), without HSTS: it has no certificate.
    served = site.https(FORCED, "/p")
    assert served.status == 200
    assert "strict-transport-security" not in served.headers
    # A host without tls: and without the annotation is not redirected.
    assert site.http(PLAIN).status == 200


def test_hsts_on_https_responses_with_annotation_options(site: Serve, ca: LocalCA) -> None:
    default = site.https(EXACT, ca_pem=ca.pem)
    assert default.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    tuned = site.https(HSTS_HOST, ca_pem=ca.pem)
    assert tuned.headers["strict-transport-security"] == "max-age=600; preload"
    assert "strict-transport-security" not in site.http(NO_REDIRECT).headers


# -- trusted proxies ------------------------------------------------------------------------------

FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
}


def test_forwarded_headers_believed_from_a_trusted_peer(site: Serve) -> None:
    echoed = site.http(PLAIN, headers=FORWARDED).json()["headers"]
    assert echoed["x-real-ip"] == "203.0.113.7"
    assert echoed["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert echoed["x-forwarded-proto"] == "https"
    cf = site.http(PLAIN, headers={**FORWARDED, "CF-Connecting-IP": "198.51.100.9"})
    assert cf.json()["headers"]["x-real-ip"] == "198.51.100.9"
    # The proxy in front terminated TLS: no redirect loop for force-ssl-redirect.
    assert site.http(FORCED, headers=FORWARDED).status == 200


def test_forwarded_headers_replaced_from_an_untrusted_peer(site: Serve) -> None:
    untrusted = {**FORWARDED, "CF-Connecting-IP": "198.51.100.9"}
    echoed = site.http(PLAIN, headers=untrusted, source="127.0.0.2").json()["headers"]
    assert echoed["x-real-ip"] == "127.0.0.2"
    assert echoed["x-forwarded-for"] == "127.0.0.2"
    assert echoed["x-forwarded-proto"] == "http"
    assert "cf-connecting-ip" not in echoed
    assert site.http(FORCED, headers=FORWARDED, source="127.0.0.2").status == 308


# -- hot swap, bad Secrets, default certificate ------------------------------------------------


def problem_logged(running: Serve, *words: str) -> bool:
    return any(all(w in line for w in words) for line in running.process.output.splitlines())


def test_secret_file_hot_swap_keeps_open_connections_and_bad_secret_keeps_previous(
    tmp_path: Path, echo_port: int, ca: LocalCA
) -> None:
    secret_file = tmp_path / "secret.yaml"
    write_manifests(tmp_path / "app.yaml", *app_objects(echo_port),
                    tls_ingress("swap", EXACT, "swap-tls"))  # fmt: skip
    write_manifests(secret_file, secret_tls("swap-tls", *ca.issue(EXACT)))
    running = start_serve(tmp_path)
    try:
        with Connection(running.https_port, server_name=EXACT, ca_pem=ca.pem) as kept:
            first = fingerprint(kept.certificate)
            assert kept.request(EXACT).status == 200

            write_manifests(secret_file, secret_tls("swap-tls", *ca.issue(EXACT, "v2.test")))

            def swapped() -> x509.Certificate | None:
                cert = running.handshake(EXACT, ca.pem)
                return cert if fingerprint(cert) != first else None

            second = wait_until(swapped, what="a new handshake to see the new certificate")
            assert isinstance(second, x509.Certificate)
            # The connection opened before the swap keeps working on the certificate it had.
            assert kept.request(EXACT).status == 200
            assert fingerprint(kept.certificate) == first

        # A bad Secret (the key does not match the certificate) is refused and reported; the
        # previous certificate keeps serving.
        chain, _ = ca.issue(EXACT)
        _, other_key = ca.issue(EXACT)
        write_manifests(secret_file, secret_tls("swap-tls", chain, other_key))
        wait_until(lambda: problem_logged(running, "InvalidCertificate", "does not match"),
                   what="the bad Secret to be reported")  # fmt: skip
        assert fingerprint(running.handshake(EXACT, ca.pem)) == fingerprint(second)
        assert running.https(EXACT, ca_pem=ca.pem).status == 200
    finally:
        running.process.stop()


def test_default_ssl_certificate_flag(tmp_path: Path, echo_port: int, ca: LocalCA) -> None:
    write_manifests(
        tmp_path / "site.yaml",
        *app_objects(echo_port),
        tls_ingress("plain", PLAIN, None),
        secret_tls("fallback", *ca.issue("fallback.example.test"), namespace="infra"),
    )
    running = start_serve(tmp_path, "--default-ssl-certificate", "infra/fallback")
    try:
        for name in (None, "unknown.example.test"):
            cert = running.handshake(name)
            assert cert.subject.rfc4514_string() == "CN=fallback.example.test"
        assert running.https(PLAIN, server_name=None).status == 200
    finally:
        running.process.stop()


# -- check -----------------------------------------------------------------------------------------


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyingress", "check", "--manifests", str(folder)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_reports_certificate_problems(tmp_path: Path, ca: LocalCA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue("old.example.test", not_before=now - datetime.timedelta(days=20),
                       not_after=now - datetime.timedelta(days=1))  # fmt: skip
    chain, _ = ca.issue("mismatch.example.test")
    _, wrong_key = ca.issue("mismatch.example.test")
    objects = [
        *app_objects(8080),
        tls_ingress("old", "old.example.test", "old-tls"),
        secret_tls("old-tls", *expired),
        tls_ingress("mismatch", "mismatch.example.test", "mismatch-tls"),
        secret_tls("mismatch-tls", chain, wrong_key),
        tls_ingress("other", "other.example.test", "other-tls"),
        secret_tls("other-tls", *ca.issue("not-other.example.test")),
        tls_ingress("bad", "bad.example.test", "bad-tls"),
        {
            **secret_tls("bad-tls", b"", b""),
            "data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "bm90IGEga2V5"},
        },
    ]
    write_manifests(tmp_path / "site.yaml", *objects)
    result = check(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    def reported(ingress_name: str, *words: str) -> bool:
        return any(f"default/{ingress_name}" in line and all(w in line for w in words)
                   for line in lines)  # fmt: skip

    assert reported("old", "InvalidCertificate", "expired"), lines
    assert reported("mismatch", "InvalidCertificate", "does not match"), lines
    assert reported("other", "CertificateNameMismatch", "other.example.test"), lines
    assert reported("bad", "InvalidCertificate", "tls.crt"), lines

    good = tmp_path / "good"
    good.mkdir()
    write_manifests(good / "site.yaml", *objects[:3], tls_ingress("ok", EXACT, "ok-tls"),
                    secret_tls("ok-tls", *ca.issue(EXACT)))  # fmt: skip
    assert check(good).returncode == 0, check(good).stdout

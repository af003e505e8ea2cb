"""Backend TLS (backend-protocol: HTTPS + proxy-ssl-*) against a real TLS server on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyingress.model import ObjectRef, Snapshot
from pyingress.routing.annotations import Annotations
from pyingress.routing.policy import PolicyContext
from pyingress.traffic.policy import ProxySSL, parse_traffic
from pyingress.traffic.runtime import TrafficRuntime, client_context
from tests.traffic.conftest import nginx


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca_and_leaf(name: str) -> tuple[bytes, bytes, bytes]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), leaf.public_bytes(pem), _pem(leaf_key)


async def handshake(port: int, context: ssl.SSLContext, server_hostname: str | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname=server_hostname)
    data = await reader.read()
    writer.close()
    return data


def test_verify_off_accepts_any_backend_and_verify_on_checks_ca_and_name(tmp_path: Path) -> None:
    ca_pem, leaf_pem, key_pem = make_ca_and_leaf("argocd-server.argocd.svc")
    (tmp_path / "leaf.pem").write_bytes(leaf_pem + key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem")
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "argocd-ca", "namespace": "argocd"},
              "data": {"ca.crt": base64.b64encode(ca_pem).decode()}}
    context = PolicyContext(ObjectRef("Ingress", "argocd", "argocd"), Snapshot.of([secret]), [])
    traffic = parse_traffic(Annotations(nginx(
        backend_protocol="HTTPS", proxy_ssl_verify="true", proxy_ssl_secret="argocd/argocd-ca",
        proxy_ssl_name="argocd-server.argocd.svc")), context)
    assert traffic is not None and traffic.upstream.ssl is not None
    verified = traffic.upstream.ssl
    assert verified.ca_pem == ca_pem and "ca_pem" not in repr(verified) and not context.problems

    async def scenario() -> None:
        async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"ok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        runtime = TrafficRuntime(fallback=None)  # type: ignore[arg-type]
        try:
            plain = ProxySSL()
            assert await handshake(port, runtime.ssl_context(plain),
                                   runtime.server_hostname(plain, "argocd.example")) == b"ok"
            name = runtime.server_hostname(verified, "argocd.example")
            assert name == "argocd-server.argocd.svc"
            assert await handshake(port, runtime.ssl_context(verified), name) == b"ok"
            assert runtime.ssl_context(verified) is runtime.ssl_context(verified)
            with pytest.raises(ssl.SSLCertVerificationError):
                await handshake(port, client_context(verified), "wrong.example")
            untrusted = ProxySSL(verify=True)
            with pytest.raises(ssl.SSLCertVerificationError):
                await handshake(port, client_context(untrusted), "argocd-server.argocd.svc")
        finally:
            server.close()

    asyncio.run(scenario())

"""Fixtures for the TLS tests: a local test CA, Secrets built from it, and TLS clients/servers."""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyingress.model import ObjectRef
from pyingress.routing.table import RouteTable, TLSHost

NOW = datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCA:
    """A throw-away certificate authority issuing server certificates for tests."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyingress test CA")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *names: str,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[bytes, bytes]:
        """``(chain_pem, key_pem)`` for ``names``; the CN is the first name."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - datetime.timedelta(hours=1))
            .not_valid_after(not_after or NOW + datetime.timedelta(days=10))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.pem
        return chain, _pem_key(key)


@pytest.fixture(scope="session")
def ca() -> LocalCA:
    return LocalCA()


def tls_secret(
    name: str, chain: bytes, key: bytes, namespace: str = "default"
) -> dict[str, object]:
    """A kubernetes.io/tls Secret as the API serves it (base64 ``data``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            "tls.crt": base64.b64encode(chain).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }


INGRESS = ObjectRef("Ingress", "default", "web")


def table_for(hosts: dict[str, str | None], ingress: ObjectRef = INGRESS) -> RouteTable:
    """A route table whose ``tls_hosts`` map each host to Secret ``default/<name>``."""
    table = RouteTable()
    for host, secret in hosts.items():
        ref = ObjectRef("Secret", "default", secret) if secret else None
        table.tls_hosts[host] = TLSHost(host, ref, ingress)
    return table


@dataclass
class Handshake:
    names: set[str]
    common_name: str
    version: str
    alpn: str | None


def peer_names(der: bytes) -> tuple[set[str], str]:
    cert = x509.load_der_x509_certificate(der)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = set()
    return names, str(cn[0].value) if cn else ""


def client_context(ca_pem: bytes | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["http/1.1"])
    if ca_pem is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=ca_pem.decode())
    return context


def handshake(port: int, server_name: str | None, ca_pem: bytes | None = None) -> Handshake:
    """Connect, finish the handshake (with SNI unless ``server_name`` is None), report the cert."""
    context = client_context(ca_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        names, cn = peer_names(der)
        return Handshake(names, cn, tls.version() or "", tls.selected_alpn_protocol())


class TinyTLSServer:
    """A keep-alive HTTP/1.1 server on an asyncio TLS listener, run in its own thread.

    Stands in for the proxy's HTTPS listener: it answers every request with the SNI name the
    client sent, so the tests see both the certificate and the connection still working.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TinyTLSServer:
        self._thread.start()
        assert self._started.wait(30), "TLS server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            self.loop.run_until_complete(self._server.wait_closed())
            self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                ssl_object = writer.get_extra_info("ssl_object")
                body = (ssl_object.server_hostname or "-").encode() if ssl_object else b"-"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture
def tls_server_factory() -> Iterator[type[TinyTLSServer]]:
    yield TinyTLSServer

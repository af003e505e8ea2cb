"""ssl-passthrough: SNI parsing from real ClientHellos and the relay, over loopback sockets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from pyingress.traffic.passthrough import INCOMPLETE, NotTLS, SniRouter, client_hello_sni
from pyingress.tls.selfsigned import self_signed_pem
from tests.support import manifests as m
from tests.traffic.conftest import compile_objects, nginx


def client_hello(server_name: str | None) -> bytes:
    """The ClientHello Python's ssl module really sends, captured from a memory BIO."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    if server_name is None:
        context.check_hostname = False
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_sni_is_read_from_a_real_client_hello() -> None:
    hello = client_hello("Argo.Example")
    assert client_hello_sni(hello) == "argo.example"
    assert client_hello_sni(hello[:40]) == INCOMPLETE
    with pytest.raises(NotTLS):
        client_hello_sni(b"GET / HTTP/1.1\r\n\r\n")


def server_context(tmp_path: Path, name: str) -> ssl.SSLContext:
    cert, key = self_signed_pem(name)
    (tmp_path / f"{name}.crt").write_bytes(cert)
    (tmp_path / f"{name}.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return context


async def tls_server(context: ssl.SSLContext, answer: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


async def ask(port: int, server_name: str) -> tuple[bytes, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    writer.write(b"hello\n")
    answer = await reader.read()
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    from cryptography import x509

    name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return answer, name


def test_passthrough_host_reaches_the_backend_tls_others_are_terminated(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = await tls_server(server_context(tmp_path, "argocd-backend"), b"from argo\n")
        terminator = await tls_server(server_context(tmp_path, "pyingress"), b"terminated\n")
        backend_port = backend.sockets[0].getsockname()[1]
        service = m.service("argocd", [{"name": "https", "port": 443, "targetPort": backend_port}])
        objects = (
            m.ingress("argocd", [m.rule("argocd.example", m.path("/", "argocd", port="https"))],
                      annotations=nginx(ssl_passthrough="true", backend_protocol="HTTPS")),
            m.ingress("web", [m.rule("web.example", m.path("/", "argocd", port="https"))]),
            service,
            m.endpoint_slice("argocd", ["127.0.0.1"], backend_port, port_name="https"),
        )
        table = compile_objects(*objects).table
        terminate = ("127.0.0.1", terminator.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        router = await loop.create_server(lambda: SniRouter(lambda: table, terminate),
                                          "127.0.0.1", 0)
        port = router.sockets[0].getsockname()[1]
        try:
            assert await ask(port, "argocd.example") == (b"from argo\n", "CN=argocd-backend")
            assert await ask(port, "web.example") == (b"terminated\n", "CN=pyingress")
            assert await ask(port, "unknown.example") == (b"terminated\n", "CN=pyingress")
        finally:
            for server in (router, backend, terminator):
                server.close()

    asyncio.run(scenario())

"""ssl-passthrough: SNI parsing from real ClientHellos, the peeking listener and the relay."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from pyingress.traffic.passthrough import (
    INCOMPLETE,
    NotTLS,
    PassthroughListener,
    client_hello_sni,
    passthrough_endpoints,
    terminate_with,
)
from pyingress.tls.selfsigned import self_signed_pem
from tests.support import manifests as m
from tests.support.net import wait_until_async
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


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(answer: bytes) -> Handler:
    """A handler that reads one line and answers ``answer`` plus the peer address it saw."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        peer = writer.get_extra_info("peername")
        writer.write(answer + f" {peer[0]}\n".encode())
        await writer.drain()
        writer.close()

    return handle


async def tls_server(context: ssl.SSLContext, answer: bytes) -> asyncio.Server:
    return await asyncio.start_server(answering(answer), "127.0.0.1", 0, ssl=context)


async def ask(port: int, server_name: str, split: bool = False) -> tuple[bytes, str]:
    """A TLS request: the answer and the subject of the certificate the client was shown.

    ``split`` sends the ClientHello in two writes, as a slow or fragmenting client would.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", port))
    if split:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
        with pytest.raises(ssl.SSLWantReadError):
            hello.do_handshake()
        data = outgoing.read()
        sock.sendall(data[:20])
        await asyncio.sleep(0)  # let the listener peek at the first part on its own
        sock.sendall(data[20:])
        return await _finish_split(sock, hello, incoming, outgoing)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=server_name
    )
    writer.write(b"hello\n")
    answer = await reader.read()
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return answer, _subject(der)


async def _finish_split(
    sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> tuple[bytes, str]:
    """Finish a handshake begun on memory BIOs, over ``sock`` (in a thread: plain blocking)."""

    def run() -> tuple[bytes, str]:
        with sock:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    incoming.write(sock.recv(65536))
            tls.write(b"hello\n")
            sock.sendall(outgoing.read())
            answer = b""
            while not answer.endswith(b"\n"):
                try:
                    answer += tls.read(65536)
                except ssl.SSLWantReadError:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    incoming.write(chunk)
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return answer, _subject(der)

    return await asyncio.to_thread(run)


def _subject(der: bytes) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def passthrough_objects(backend_ports: list[int]) -> list[dict[str, object]]:
    service = m.service("argocd", [{"name": "https", "port": 443}])
    slices = [m.endpoint_slice("argocd", ["127.0.0.1"], port, port_name="https", name=f"argocd-{port}")
              for port in backend_ports]
    return [
        m.ingress("argocd", [m.rule("argocd.example", m.path("/api", "argocd", port="https")),
                             m.rule("*.wild.example", m.path("/", "argocd", port="https"))],
                  annotations=nginx(ssl_passthrough="true", backend_protocol="HTTPS")),
        m.ingress("web", [m.rule("web.example", m.path("/", "argocd", port="https")),
                          m.rule("plain.wild.example", m.path("/", "argocd", port="https"))]),
        service,
        *slices,
    ]


def test_passthrough_hosts_match_by_sni_only_exact_hides_wildcard() -> None:
    table = compile_objects(*passthrough_objects([9443])).table
    assert passthrough_endpoints(table, "argocd.example") is not None  # path /api: irrelevant
    assert passthrough_endpoints(table, "a.wild.example") is not None
    assert passthrough_endpoints(table, "plain.wild.example") is None
    assert passthrough_endpoints(table, "web.example") is None
    assert passthrough_endpoints(table, None) is None


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_listener_relays_passthrough_hosts_and_terminates_the_rest(
    tmp_path: Path, run: Callable[[Awaitable[None]], None]
) -> None:
    async def scenario() -> None:
        backend = await tls_server(server_context(tmp_path, "argocd-backend"), b"from argo")
        backend_port = backend.sockets[0].getsockname()[1]
        with socket.socket() as probe:  # a port nobody listens on: the relay must skip it
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        table = compile_objects(*passthrough_objects([dead_port, backend_port])).table
        handler = answering(b"terminated")
        terminate = terminate_with(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), handler),
            server_context(tmp_path, "pyingress"),
        )
        listener = PassthroughListener(lambda: table, terminate, hello_timeout=0.5)
        listener.listen("127.0.0.1", 0)
        port = listener.ports[0]
        try:
            for _ in range(3):
                assert await ask(port, "argocd.example") == (
                    b"from argo 127.0.0.1\n", "CN=argocd-backend")
            assert await ask(port, "x.wild.example", split=True) == (
                b"from argo 127.0.0.1\n", "CN=argocd-backend")
            assert await ask(port, "web.example") == (b"terminated 127.0.0.1\n", "CN=pyingress")
            assert await ask(port, "plain.wild.example", split=True) == (
                b"terminated 127.0.0.1\n", "CN=pyingress")
            assert await ask(port, "unknown.example") == (b"terminated 127.0.0.1\n", "CN=pyingress")
            silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(silent_reader.read(), 30) == b""  # hello timeout
            silent_writer.close()
        finally:
            listener.close()
            backend.close()

    run(scenario())


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_both_sides_of_a_relay_use_tcp_keepalive(
    tmp_path: Path, run: Callable[[Awaitable[None]], None]
) -> None:
    """A quiet relay stays open (no idle timeout); keep-alive reclaims one whose peer vanished."""

    async def scenario() -> None:
        backend = await tls_server(server_context(tmp_path, "argocd-backend"), b"from argo")
        backend_port = backend.sockets[0].getsockname()[1]
        table = compile_objects(*passthrough_objects([backend_port])).table
        listener = PassthroughListener(lambda: table, lambda sock: sock.close())
        listener.listen("127.0.0.1", 0)
        port = listener.ports[0]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                  server_hostname="argocd.example")  # fmt: skip
        try:
            sides = await wait_until_async(lambda: relay_sockets(port, backend_port),
                                           what="the relay's two sockets")  # fmt: skip
            assert {side: kind for side, (kind, _) in sides.items()} == {
                "client side": "keepalive", "backend side": "keepalive"}
            # The first probe within a minute, not after the kernel's default two hours.
            assert all(left <= 60 for _, left in sides.values()), sides
        finally:
            writer.close()
            listener.close()
            backend.close()

    run(scenario())


async def relay_sockets(port: int, backend_port: int) -> dict[str, tuple[str, float]] | None:
    """The timer ``ss`` shows on each of the relay's sockets, as (kind, seconds left), once
    both exist and are quiet (``ss`` shows a retransmission timer, ``on``,
    instead while bytes are still unacknowledged)."""
    listed = await asyncio.create_subprocess_exec(
        "ss", "-tnoH", "state", "established", stdout=asyncio.subprocess.PIPE)
    out, _ = await listed.communicate()
    sides: dict[str, tuple[str, float]] = {}
    for line in out.decode().splitlines():
        fields = line.split()
        local, peer = fields[2], fields[3]
        timer = next((f for f in fields[4:] if f.startswith("timer:(")), "timer:(none,0sec")
        kind, left = timer[len("timer:("):].split(",")[:2]
        number = left.rstrip("mincseh")
        seconds = float(number) * {"ms": 0.001, "sec": 1, "min": 60}.get(left[len(number):], 1e9)
        if local == f"127.0.0.1:{port}":
            sides["client side"] = (kind, seconds)
        elif peer == f"127.0.0.1:{backend_port}":
            sides["backend side"] = (kind, seconds)
    quiet = all(kind != "on" for kind, _ in sides.values())
    return sides if len(sides) == 2 and quiet else None


def test_passthrough_without_the_flag_is_a_warning_that_names_it() -> None:
    from pyingress.model import Severity, Snapshot
    from pyingress.routing.compiler import CompileOptions, compile_routes

    snapshot = Snapshot.of([m.ingress_class(), *passthrough_objects([9443])])
    problems = compile_routes(snapshot).problems
    flagged = [p for p in problems if p.reason == "SSLPassthroughDisabled"]
    assert [p.ref.name for p in flagged] == ["argocd"]
    assert flagged[0].severity is Severity.WARNING
    assert "--enable-ssl-passthrough" in flagged[0].message
    enabled = compile_routes(snapshot, CompileOptions(ssl_passthrough=True)).problems
    assert not [p for p in enabled if p.reason == "SSLPassthroughDisabled"]

"""TLS and upstream traffic features end to end, through ``pyingress serve --manifests``.

One ``serve --enable-ssl-passthrough`` process fronts: a backend that terminates TLS itself
(reached by ssl-passthrough, and by ``backend-protocol: HTTPS``), ``pyingress echo``, a slow
backend (EWMA), a backend that holds requests until told (limit-connections) and one that
never answers (timeouts). The small backends run in threads of the test process.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509

from pyingress.tls.selfsigned import DEFAULT_COMMON_NAME
from tests.support import manifests as m
from tests.support.net import free_port, wait_until
from tests.support.processes import ManagedProcess, pyingress, serve_manifests
from tests.traffic.conftest import nginx
from tests.traffic.test_e2e import ing, svc
from tests.traffic.test_runtime import make_ca_and_leaf

Obj = dict[str, Any]
BACKEND_NAME = "backend.internal"


class Backend(ThreadingHTTPServer):
    """A small HTTP(S) backend: answers JSON naming itself, the SNI it saw and the headers.

    ``/slow`` answers after ``delay`` seconds; ``/hold`` waits until :attr:`release` is set.
    """

    daemon_threads = True

    def __init__(self, name: str, context: ssl.SSLContext | None = None, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.delay = delay
        self.release = threading.Event()
        self.held = 0
        self.sni: dict[int, str | None] = {}
        if context is not None:
            context.sni_callback = self._on_sni
            self.socket = context.wrap_socket(self.socket, server_side=True,
                                              do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def _on_sni(self, sock: Any, name: str | None, _: ssl.SSLContext) -> None:
        self.sni[id(sock)] = name

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Backend
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        if self.path.startswith("/slow"):
            time.sleep(server.delay)
        if self.path.startswith("/hold"):
            server.held += 1
            server.release.wait(30)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
        body = json.dumps({
            "name": server.name,
            "sni": server.sni.get(id(self.connection)),
            "headers": {key.lower(): value for key, value in self.headers.items()},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Stack:
    http: str
    https_port: int
    backends: dict[str, Backend]
    client: httpx.Client
    blocked: list[socket.socket] = field(default_factory=list)

    def get(self, host: str, target: str = "/", timeout: float = 30.0) -> httpx.Response:
        return self.client.get(self.http + target, headers={"Host": host}, timeout=timeout)


def tls_objects(ca_pem: bytes, ports: dict[str, int]) -> list[Obj]:
    ca_secret = {"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "backend-ca", "namespace": "default"},
                 "data": {"ca.crt": base64.b64encode(ca_pem).decode()}}
    https = {"backend_protocol": "HTTPS"}
    verified = {**https, "proxy_ssl_verify": "true", "proxy_ssl_secret": "default/backend-ca"}
    return [
        ca_secret,
        *svc("tlsback", ports["tls"]), *svc("echo", ports["echo"]),
        *svc("mixed", ports["echo"], ports["slow"]), *svc("holding", ports["hold"]),
        *svc("hang", ports["hang"]), *svc("full", ports["full"]),
        ing("secure", "secure.test", "tlsback", nginx(ssl_passthrough="true", **https),
            path="/only-this-path"),
        ing("web", "web.test", "echo"),
        ing("noverify", "noverify.test", "tlsback", nginx(**https)),
        ing("verified", "verified.test", "tlsback",
            nginx(**verified, proxy_ssl_name=BACKEND_NAME, proxy_ssl_server_name="true")),
        ing("wrongname", "wrongname.test", "tlsback", nginx(**verified, proxy_ssl_name="other.internal")),
        ing("untrusted", "untrusted.test", "tlsback", nginx(backend_protocol="HTTPS", proxy_ssl_verify="true",
                                                            proxy_ssl_name=BACKEND_NAME)),
        ing("readtimeout", "read-timeout.test", "hang", nginx(proxy_read_timeout="1")),
        ing("connecttimeout", "connect-timeout.test", "full",
            nginx(proxy_connect_timeout="1", proxy_next_upstream_tries="1")),
        ing("ewma", "ewma.test", "mixed", nginx(load_balance="ewma")),
        ing("conns", "conns.test", "holding", nginx(limit_connections="1")),
    ]


def full_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A port whose accept queue is full: new connections are never completed (SYN dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    return listener, fillers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("traffic-tls-e2e")
    ca_pem, leaf_pem, key_pem = make_ca_and_leaf(BACKEND_NAME)
    (folder / "leaf.pem").write_bytes(leaf_pem + key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.pem")
    (folder / "leaf.pem").unlink()
    processes: list[ManagedProcess] = []
    backends = {"tls": Backend("tls", context), "slow": Backend("slow", delay=0.3),
                "hold": Backend("hold")}
    hang = socket.socket()  # listens, never accepts: requests are never answered
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    full, fillers = full_listener()
    try:
        echo_port = free_port()
        processes.append(pyingress("echo", "--port", str(echo_port), "--name", "echo"))
        processes[-1].wait_for_port(echo_port)
        ports = {name: backend.port for name, backend in backends.items()}
        ports.update(echo=echo_port, hang=hang.getsockname()[1], full=full.getsockname()[1])
        manifests = folder / "manifests"
        manifests.mkdir()
        m.write_manifests(manifests / "objects.yaml", *tls_objects(ca_pem, ports))
        served = serve_manifests(manifests, "--enable-ssl-passthrough")
        processes.append(served.process)
        with httpx.Client() as client:
            yield Stack(f"http://127.0.0.1:{served.http_port}", served.https_port, backends,
                        client)  # fmt: skip
    finally:
        for process in processes:
            process.stop()
        for backend in backends.values():
            backend.stop()
        for sock in (hang, full, *fillers):
            sock.close()


def tls_get(port: int, host: str) -> tuple[str, dict[str, Any]]:
    """GET / over TLS with SNI ``host``: the certificate subject shown and the JSON answer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    subject = x509.load_der_x509_certificate(der).subject
    common_name = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return str(common_name), json.loads(body)


def test_passthrough_and_terminated_hosts_share_the_https_port(stack: Stack) -> None:
    shown, answer = tls_get(stack.https_port, "secure.test")
    assert shown == BACKEND_NAME  # the backend's own certificate: pyingress did not terminate
    assert answer["name"] == "tls" and answer["sni"] == "secure.test"
    assert "x-forwarded-for" not in answer["headers"]  # bytes relayed untouched
    shown, answer = tls_get(stack.https_port, "web.test")
    assert shown == DEFAULT_COMMON_NAME
    assert answer["name"] == "echo"
    headers = answer["headers"]
    assert headers["x-real-ip"] == "127.0.0.1" and headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"


def test_backend_https_with_and_without_verification(stack: Stack) -> None:
    plain = stack.get("noverify.test")
    assert plain.status_code == 200 and plain.json()["name"] == "tls"
    assert plain.json()["sni"] is None
    verified = stack.get("verified.test")
    assert verified.status_code == 200, verified.text
    assert verified.json()["sni"] == BACKEND_NAME
    assert stack.get("wrongname.test").status_code == 502
    assert stack.get("untrusted.test").status_code == 502


def test_route_read_timeout_answers_504_before_the_default(stack: Stack) -> None:
    # The default read timeout is 60 s; the client gives up after 30 s.
    assert stack.get("read-timeout.test", timeout=30).status_code == 504


def test_route_connect_timeout_answers_504(stack: Stack) -> None:
    assert stack.get("connect-timeout.test", timeout=30).status_code == 504


def test_ewma_sends_most_requests_away_from_the_slow_endpoint(stack: Stack) -> None:
    names = Counter()
    for _ in range(40):
        response = stack.get("ewma.test", "/slow")
        assert response.status_code == 200
        names[response.json()["name"]] += 1
    assert names["echo"] >= 28, names


def test_limit_connections_answers_503_with_retry_after(stack: Stack) -> None:
    hold = stack.backends["hold"]
    hold.release.clear()
    held: list[httpx.Response] = []
    first = threading.Thread(target=lambda: held.append(stack.get("conns.test", "/hold")))
    first.start()
    try:
        wait_until(lambda: hold.held >= 1, what="the first request to reach the backend")
        second = stack.get("conns.test", "/")
        assert second.status_code == 503
        assert int(second.headers["retry-after"]) >= 1
    finally:
        hold.release.set()
        first.join(30)
    assert held and held[0].status_code == 200
    assert stack.get("conns.test", "/").status_code == 200

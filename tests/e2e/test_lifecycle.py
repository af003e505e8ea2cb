"""Startup errors, graceful SIGTERM and several workers, for ``pyingress serve``."""

from __future__ import annotations

import signal
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Echo, Serve, app_objects, host_ingress
from tests.support.manifests import endpoint_slice, ingress_class, path, service, write_manifests
from tests.support.net import free_port, port_open, wait_until
from tests.support.processes import pyingress


def run_to_exit(*args: str) -> tuple[int, list[str]]:
    process = pyingress(*args)
    try:
        code = process.proc.wait(30)
        return code, [line for line in process.output.splitlines() if line.strip()]
    finally:
        process.stop()


def serve_args(folder: Path, http_port: int, health_port: int, *extra: str) -> list[str]:
    return [
        "serve", "--manifests", str(folder), "--bind", "127.0.0.1",
        "--http-port", str(http_port), "--health-port", str(health_port), *extra,
    ]  # fmt: skip


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("flag", ["--http-port", "--health-port"])
def test_port_in_use_is_one_line_and_non_zero(tmp_path: Path, taken_port: int, flag: str) -> None:
    ports = {"--http-port": free_port(), "--health-port": free_port(), flag: taken_port}
    code, lines = run_to_exit(
        *serve_args(tmp_path, ports["--http-port"], ports["--health-port"])
    )
    assert code == 2
    errors = [line for line in lines if "error" in line]
    assert errors == [
        f"pyingress serve: error: {flag}: cannot listen on 127.0.0.1:{taken_port}: "
        "Address already in use"
    ], lines


def test_missing_folder_is_one_line_and_non_zero(tmp_path: Path) -> None:
    code, lines = run_to_exit(*serve_args(tmp_path / "nope", free_port(), free_port()))
    assert code == 2
    assert lines == [f"pyingress serve: error: --manifests: {tmp_path / 'nope'} is not a folder"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--http-port", "70000"], "argument --http-port: 70000 is not a port number (1-65535)"),
        (["--workers", "0"], "argument --workers: 0 must be at least 1"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--no-source"], "no source: give --manifests DIR, --kubeconfig PATH or --in-cluster"),
    ],
)
def test_bad_flag_exits_non_zero_with_a_clear_line(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    args = ["serve", "--health-port", str(free_port())]
    if flags == ["--no-source"]:
        flags = []
    else:
        args += ["--manifests", str(tmp_path)]
    args += flags
    code, lines = run_to_exit(*args)
    assert code == 2
    assert len(lines) == 1, lines
    assert message in lines[0], lines
    assert lines[0].startswith("pyingress serve: error: "), lines


class HeldBackend:
    """An HTTP backend that holds each response until the test releases it."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.release = threading.Event()
        held = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                held.received.set()
                held.release.wait(30)
                body = b'{"name": "held"}'
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_drains_in_flight_requests_and_exits_zero(
    tmp_path: Path, serve: Callable[..., Serve]
) -> None:
    held = HeldBackend()
    try:
        write_manifests(
            tmp_path / "app.yaml",
            ingress_class(),
            service("slow", [{"name": "http", "port": 80}]),
            endpoint_slice("slow", ["127.0.0.1"], held.port),
            host_ingress("slow", "slow.example", path("/", "slow")),
        )
        running = serve(tmp_path)
        result: list[httpx.Response | Exception] = []

        def request() -> None:
            try:
                result.append(running.get("slow.example"))
            except Exception as exc:
                result.append(exc)

        client = threading.Thread(target=request)
        client.start()
        assert held.received.wait(30), "the request never reached the backend"
        running.process.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not port_open(running.http_port), what="listener closed")
        assert running.process.proc.poll() is None, "exited before the request finished"
        held.release.set()
        client.join(30)
        assert running.process.proc.wait(30) == 0, running.process.output
        [response] = result
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200
        assert response.json()["name"] == "held"
    finally:
        held.close()


def test_workers_share_the_ports_and_stop_together(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    write_manifests(tmp_path / "web.yaml", *app_objects("web", echo("web").port))
    write_manifests(
        tmp_path / "i.yaml", ingress_class(), host_ingress("web", "web.example", path("/", "web"))
    )
    running = serve(tmp_path, "--workers", "2")
    children = Path(f"/proc/{running.process.proc.pid}/task/{running.process.proc.pid}/children")
    assert len(children.read_text().split()) == 2
    for _ in range(20):
        with httpx.Client() as fresh:
            response = fresh.get(running.url, headers={"Host": "web.example"})
            assert response.json()["name"] == "web"
    running.process.proc.send_signal(signal.SIGTERM)
    assert running.process.proc.wait(30) == 0, running.process.output

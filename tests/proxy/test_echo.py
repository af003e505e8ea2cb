"""The echo backend as a command: it serves JSON, and a taken port is one clear line."""

from __future__ import annotations

import socket

import httpx

from tests.support.net import free_port
from tests.support.processes import pyingress


def test_echo_command_serves_json() -> None:
    port = free_port()
    proc = pyingress("echo", "--port", str(port), "--name", "blue")
    try:
        proc.wait_for_port(port)
        response = httpx.get(f"http://127.0.0.1:{port}/p?q=1", headers={"X-Test": "yes"})
    finally:
        proc.stop()
    body = response.json()
    assert set(body) == {"name", "method", "path", "query", "headers", "remote"}
    seen = (body["name"], body["method"], body["path"], body["query"])
    assert seen == ("blue", "GET", "/p", "q=1")
    assert body["headers"]["x-test"] == "yes"
    assert body["remote"].startswith("127.0.0.1:")


def test_echo_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = pyingress("echo", "--port", str(port))
        code = proc.proc.wait(30)
        output = proc.output
        proc.stop()
    assert code == 2
    assert output.strip().splitlines() == [
        f"pyingress echo: error: port {port} on 127.0.0.1 is already in use"
    ]

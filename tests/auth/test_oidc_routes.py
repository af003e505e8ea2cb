"""OpenID Connect on more kinds of route: WebSocket upgrades and per-Ingress clients.

A real WebSocket echo backend (the ``websockets`` library, in a thread of the test) sits behind
``auth-oidc`` Ingresses; a second client registered at the npm oidc-provider is named by an
``oidc-secret`` annotation. Logins are scripted with httpx (:class:`CookieBrowser`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from tests.auth.conftest import app_objects, secret, start_serve
from tests.auth.oidc_support import CookieBrowser, start_idp
from tests.support.manifests import ingress_class, write_manifests
from tests.support.net import DEADLINE, free_port
from tests.support.processes import ManagedProcess, pyingress

HOSTS = ("ws", "wsadmins", "team", "a", "broken")
OIDC = {"pyingress.io/auth-oidc": "true"}


class SocketBackend:
    """A WebSocket backend: greets with the user the proxy named, then echoes every message.

    It counts every TCP connection it accepts, so a test can tell that a refused upgrade never
    reached it, and keeps the headers of every handshake it saw.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.handshakes: list[dict[str, str]] = []
        self.server: Server = serve(self._handle, "127.0.0.1", 0, process_request=self._seen)
        self.port = int(self.server.socket.getsockname()[1])
        accept = self.server.handler

        def counting(sock: socket.socket, address: object) -> None:
            self.accepted += 1
            accept(sock, address)

        self.server.handler = counting
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _seen(self, connection: ServerConnection, request: Request) -> None:
        raw = request.headers.raw_items()
        self.handshakes.append({name.lower(): value for name, value in raw})

    def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        user = connection.request.headers.get("X-Auth-Request-User", "nobody")
        connection.send(f"hello {user}")
        for message in connection:
            connection.send(message)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(DEADLINE)


@dataclass
class Setup:
    port: int
    idp_port: int
    backend: SocketBackend
    process: ManagedProcess

    def url(self, name: str, target: str = "/") -> str:
        return f"http://{name}.homelab.test:{self.port}{target}"

    def websocket(self, name: str, cookies: dict[str, str] | None = None) -> ClientConnection:
        """Open a WebSocket through the proxy to ``name``, sending ``cookies``."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        try:
            return connect(f"ws://{name}.homelab.test:{self.port}/chat", sock=sock,
                           additional_headers=headers, open_timeout=DEADLINE,
                           close_timeout=DEADLINE)
        except BaseException:
            sock.close()
            raise


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("oidc-routes")
    port, idp_port, echo_port = free_port(), free_port(), free_port()
    started: list[ManagedProcess] = []
    backend = SocketBackend()
    try:
        echo = pyingress("echo", "--port", str(echo_port), "--name", "protected")
        started.append(echo)
        callbacks = [f"http://{h}.homelab.test:{port}/oauth2/callback" for h in HOSTS]
        started.append(start_idp(idp_port, callbacks, [], 300))
        team = {"issuer": f"http://127.0.0.1:{idp_port}".encode(), "client-id": b"team",
                "client-secret": b"team-secret"}
        objects = [
            ingress_class(),
            *app_objects(backend.port, "ws.homelab.test", OIDC, "ws"),
            *app_objects(backend.port, "wsadmins.homelab.test",
                         {**OIDC, "pyingress.io/auth-allowed-groups": "admins"}, "wsadmins"),
            *app_objects(echo_port, "a.homelab.test", OIDC, "a"),
            *app_objects(echo_port, "team.homelab.test",
                         {"pyingress.io/oidc-secret": "team-oidc"}, "team"),
            secret("team-oidc", team),
            *app_objects(echo_port, "broken.homelab.test",
                         {"pyingress.io/oidc-secret": "no-such-secret"}, "broken"),
        ]
        folder = root / "manifests"
        folder.mkdir()
        write_manifests(folder / "objects.yaml", *objects)
        (root / "client-secret").write_text("pyingress-secret\n")
        echo.wait_for_port(echo_port)
        proxy = start_serve(
            folder, "--oidc-issuer", f"http://127.0.0.1:{idp_port}",
            "--oidc-client-id", "pyingress",
            "--oidc-client-secret-file", str(root / "client-secret"),
            "--oidc-scopes", "openid email profile groups", http_port=port)
        started.append(proxy.process)
        yield Setup(port, idp_port, backend, proxy.process)
    finally:
        for process in reversed(started):
            if "Traceback" in process.output:
                print(process.output[-8000:])
            process.stop()
        backend.stop()


def login(setup: Setup, host: str, user: str = "alice", password: str = "wonderland",
          ) -> tuple[CookieBrowser, dict[str, list[str]]]:
    """A scripted login at ``host``; the browser and the authorization request's query."""
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url(host, "/page"))
    assert first.status_code == 302, first.text
    callback = browser.sign_in_at_idp(first.headers["location"], user, password,
                                      setup.url(host))
    done = browser.proxy(callback)
    assert done.status_code == 302, done.text
    return browser, parse_qs(urlsplit(first.headers["location"]).query)


def refused_status(setup: Setup, host: str, cookies: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        setup.websocket(host, cookies).close()
    return refused.value.response.status_code


# -- WebSocket upgrades ------------------------------------------------------------------------

def test_websocket_with_session_is_relayed_both_ways(setup: Setup) -> None:
    browser, _ = login(setup, "ws")
    with setup.websocket("ws", browser.cookies) as ws:
        assert ws.recv(timeout=DEADLINE) == "hello alice"  # backend to client
        ws.send("ping")
        assert ws.recv(timeout=DEADLINE) == "ping"  # client to backend and back
        blob = bytes(range(256)) * 512
        ws.send(blob)
        assert ws.recv(timeout=DEADLINE) == blob
    seen = setup.backend.handshakes[-1]
    assert seen["x-auth-request-user"] == "alice"
    assert seen["x-auth-request-email"] == "alice@home.example"
    assert "_pyingress" not in seen.get("cookie", "")  # the session stays at the proxy
    browser.close()


def test_websocket_without_session_never_reaches_the_backend(setup: Setup) -> None:
    before = setup.backend.accepted
    assert refused_status(setup, "ws") == 401
    assert refused_status(setup, "ws", {"_pyingress_oauth": "not-a-sealed-session"}) == 401
    bob, _ = login(setup, "wsadmins", "bob", "builder")
    assert refused_status(setup, "wsadmins", bob.cookies) == 403  # signed in, not in the group
    assert setup.backend.accepted == before
    # The same proxy does reach the backend once a session is presented.
    alice, _ = login(setup, "wsadmins")
    with setup.websocket("wsadmins", alice.cookies) as ws:
        assert ws.recv(timeout=DEADLINE) == "hello alice"
    assert setup.backend.accepted == before + 1
    bob.close()
    alice.close()


# -- a client per Ingress (annotation oidc-secret) -------------------------------------------

def test_ingress_with_its_own_client(setup: Setup) -> None:
    team, query = login(setup, "team")
    assert query["client_id"] == ["team"]
    page = team.proxy(setup.url("team", "/x"), accept="application/json")
    assert page.status_code == 200
    headers = {str(k).lower(): str(v) for k, v in page.json()["headers"].items()}
    assert headers["x-auth-request-user"] == "alice"
    # A session made with one client is not accepted on routes of the other.
    assert team.proxy(setup.url("a"), accept="application/json").status_code == 401
    default, query = login(setup, "a")
    assert query["client_id"] == ["pyingress"]
    assert default.proxy(setup.url("a"), accept="application/json").status_code == 200
    assert default.proxy(setup.url("team"), accept="application/json").status_code == 401
    team.close()
    default.close()


def test_start_endpoint_uses_the_client_of_the_target_route(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    target = setup.url("team", "/deep")
    start = browser.proxy(setup.url("a", "/oauth2/start?" + urlencode({"rd": target})))
    assert start.status_code == 302
    assert parse_qs(urlsplit(start.headers["location"]).query)["client_id"] == ["team"]
    callback = browser.sign_in_at_idp(start.headers["location"], "alice", "wonderland",
                                      setup.url("a"))
    assert browser.proxy(callback).headers["location"] == target
    assert browser.proxy(target, accept="application/json").status_code == 200
    browser.close()


def test_missing_client_secret_fails_closed(setup: Setup) -> None:
    answer = httpx.get(f"http://127.0.0.1:{setup.port}/", timeout=DEADLINE,
                       headers={"Host": "broken.homelab.test", "Accept": "text/html"})
    assert answer.status_code == 503

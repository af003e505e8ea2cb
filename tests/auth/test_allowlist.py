"""IP allow-lists alone and combined with authentication (``satisfy: any | all``).

Loopback has a whole /8: the "LAN" client connects from 127.0.0.2, the "internet" one from
127.0.0.1, both to the same listener.
"""

from __future__ import annotations

import bcrypt
import httpx

from tests.auth.conftest import app_objects, basic_header, secret

LAN = "127.0.0.2"


def get(port: int, host: str, source: str, password: str | None = None) -> int:
    headers = {"Host": host}
    if password is not None:
        headers["Authorization"] = basic_header("ann", password)
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.get(f"http://127.0.0.1:{port}/", headers=headers).status_code


def test_satisfy_any_and_all(echo_port, harness) -> None:  # type: ignore[no-untyped-def]
    users = ("ann:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode() + "\n").encode()
    basic = {"nginx.ingress.kubernetes.io/auth-type": "basic",
             "nginx.ingress.kubernetes.io/auth-secret": "users"}
    allow = {"nginx.ingress.kubernetes.io/whitelist-source-range": f"{LAN}/32"}
    proxy = harness([
        *app_objects(echo_port, "any.test", {**basic, **allow,
                                             "nginx.ingress.kubernetes.io/satisfy": "any"}, "any"),
        *app_objects(echo_port, "all.test", {**basic, **allow}, "all"),
        *app_objects(echo_port, "lan-only.test", allow, "lan-only"),
        secret("users", {"auth": users}),
    ])
    port = proxy.port
    # satisfy any: the LAN skips the login, everyone else must authenticate.
    assert get(port, "any.test", LAN) == 200
    assert get(port, "any.test", "127.0.0.1") == 401
    assert get(port, "any.test", "127.0.0.1", "pw") == 200
    assert get(port, "any.test", "127.0.0.1", "wrong") == 401
    # satisfy all: both the network and the password are required.
    assert get(port, "all.test", LAN) == 401
    assert get(port, "all.test", LAN, "pw") == 200
    assert get(port, "all.test", "127.0.0.1", "pw") == 403
    # An allow-list alone.
    assert get(port, "lan-only.test", LAN) == 200
    assert get(port, "lan-only.test", "127.0.0.1") == 403

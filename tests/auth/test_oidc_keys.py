"""ID token signing keys end to end: the provider rotates its key, or signs with one it hides.

The npm oidc-provider takes its private JWKS from a file the test writes (its first key signs)
and is restarted on the same port, so the issuer stays the same while the keys change under a
running ``pyingress serve`` whose JWKS cache still holds the old set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from pyingress.auth.provider import JWKS_REFRESH_INTERVAL
from tests.auth.conftest import app_objects, start_serve
from tests.auth.oidc_support import CookieBrowser, start_idp
from tests.support.manifests import ingress_class, write_manifests
from tests.support.net import free_port
from tests.support.processes import ManagedProcess, pyingress

HOST = "keys.homelab.test"


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


@dataclass
class Peers:
    """A provider that can be restarted with other keys, in front of a running pyingress."""

    root: Path
    port: int
    idp_port: int
    started: list[ManagedProcess] = field(default_factory=list)
    idp: ManagedProcess | None = None
    proxy: ManagedProcess | None = None

    def url(self, target: str = "/") -> str:
        return f"http://{HOST}:{self.port}{target}"

    def provider(self, keys: list[RSAKey], hidden: tuple[str, ...] = ()) -> None:
        """(Re)start the provider with ``keys`` (the first signs), ``hidden`` left out of /jwks."""
        if self.idp is not None:
            self.started.remove(self.idp)
            self.idp.stop()
        jwks = self.root / f"jwks-{len(keys)}-{'-'.join(hidden)}.json"
        jwks.write_text(json.dumps({"keys": [key.as_dict(private=True) for key in keys]}))
        self.idp = start_idp(self.idp_port, [self.url("/oauth2/callback")], [self.url()], 300,
                             env={"JWKS_FILE": str(jwks), "HIDDEN_KIDS": ",".join(hidden)})
        self.started.append(self.idp)

    def jwks_fetches(self) -> int:
        """How often the running provider served its JWKS (only pyingress asks for it)."""
        assert self.idp is not None
        return self.idp.output.count("jwks served")

    def login(self) -> tuple[CookieBrowser, int]:
        """A whole scripted login; the browser and the status of the callback's answer."""
        browser = CookieBrowser(self.port)
        first = browser.proxy(self.url("/page"))
        assert first.status_code == 302, first.text
        callback = browser.sign_in_at_idp(first.headers["location"], "alice", "wonderland",
                                          self.url())
        return browser, browser.proxy(callback).status_code


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Callable[[list[RSAKey]], Peers]]:
    """Start echo, provider (with the given keys) and pyingress; all stopped afterwards."""
    made: list[Peers] = []

    def start(keys: list[RSAKey]) -> Peers:
        echo_port = free_port()
        peers = Peers(tmp_path, free_port(), free_port())
        made.append(peers)
        echo = pyingress("echo", "--port", str(echo_port), "--name", "protected")
        peers.started.append(echo)
        peers.provider(keys)
        folder = tmp_path / "manifests"
        folder.mkdir()
        objects = app_objects(echo_port, HOST, {"pyingress.io/auth-oidc": "true"}, "keys")
        write_manifests(folder / "objects.yaml", ingress_class(), *objects)
        (tmp_path / "client-secret").write_text("pyingress-secret\n")
        echo.wait_for_port(echo_port)
        proxy = start_serve(folder, "--oidc-issuer", f"http://127.0.0.1:{peers.idp_port}",
                            "--oidc-client-id", "pyingress",
                            "--oidc-client-secret-file", str(tmp_path / "client-secret"),
                            http_port=peers.port)
        peers.proxy = proxy.process
        peers.started.append(proxy.process)
        return peers

    yield start
    for peers in made:
        for process in reversed(peers.started):
            if process is peers.proxy and "Traceback" in process.output:
                print(process.output[-8000:])
            process.stop()


def test_rotated_signing_key_is_fetched_and_accepted(
    peers: Callable[[list[RSAKey]], Peers],
) -> None:
    old, new = signing_key("key-a"), signing_key("key-b")
    setup = peers([old])
    before, status = setup.login()
    assert status == 302
    assert setup.jwks_fetches() == 1

    # The provider rotates: B now signs, A is still published. pyingress has only A cached.
    setup.provider([new, old])
    assert setup.jwks_fetches() == 0
    after, status = setup.login()
    assert status == 302, setup.proxy.output[-2000:] if setup.proxy else ""
    assert setup.jwks_fetches() == 1  # the unknown kid made pyingress fetch the JWKS again
    for browser in (before, after):
        page = browser.proxy(setup.url("/x"), accept="application/json")
        assert page.status_code == 200
        headers = {str(k).lower(): v for k, v in page.json()["headers"].items()}
        assert headers["x-auth-request-user"] == "alice"
        browser.close()


def test_token_signed_with_an_unpublished_key_is_refused(
    peers: Callable[[list[RSAKey]], Peers],
) -> None:
    known, rogue = signing_key("key-a"), signing_key("key-rogue")
    setup = peers([known])
    browser, status = setup.login()
    assert status == 302
    browser.close()

    # Tokens are now signed with a key that is neither in pyingress's cache nor in the JWKS.
    setup.provider([rogue, known], hidden=("key-rogue",))
    started = time.monotonic()
    for _ in range(3):
        browser, status = setup.login()
        assert status == 403
        assert not any(name.startswith("_pyingress_oauth") for name in browser.cookies)
        assert browser.proxy(setup.url("/x"), accept="application/json").status_code == 401
        browser.close()
    windows = int((time.monotonic() - started) // JWKS_REFRESH_INTERVAL)
    assert setup.proxy is not None
    assert "ID token refused" in setup.proxy.output
    # Each unknown kid may trigger a refetch, but at most one per interval.
    assert 1 <= setup.jwks_fetches() <= 1 + windows

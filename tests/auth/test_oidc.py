"""OpenID Connect login end to end: npm oidc-provider, the auth filters, an echo backend.

The browser tests drive headless Chromium through the provider's login form; the negative
tests script the same flow with httpx so they can tamper with each step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.auth.conftest import app_objects, start_serve
from tests.auth.oidc_support import CookieBrowser, chromium_available, new_chromium, start_idp
from tests.support.manifests import ingress_class, write_manifests
from tests.support.net import free_port, wait_until
from tests.support.processes import ManagedProcess, pyingress

TOKEN_TTL = 8
"""Seconds an access token lives at the test provider: short, so refresh is exercised."""
HOSTS = ("a", "b", "admins", "lan", "other")


@dataclass
class Setup:
    port: int
    idp_port: int
    process: ManagedProcess

    def url(self, name: str, target: str = "/") -> str:
        return f"http://{name}.homelab.test:{self.port}{target}"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.idp_port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("oidc")
    port, idp_port, echo_port = free_port(), free_port(), free_port()
    started: list[ManagedProcess] = []
    try:
        echo = pyingress("echo", "--port", str(echo_port), "--name", "protected")
        started.append(echo)
        callbacks = [f"http://{h}.homelab.test:{port}/oauth2/callback" for h in HOSTS]
        logouts = [f"http://{h}.homelab.test:{port}/" for h in HOSTS]
        started.append(start_idp(idp_port, callbacks, logouts, TOKEN_TTL))
        oidc = {"pyingress.io/auth-oidc": "true"}
        objects = [
            ingress_class(),
            *app_objects(echo_port, "a.homelab.test", {**oidc, "pyingress.io/auth-skip-paths": "/public"}, "a"),
            *app_objects(echo_port, "b.homelab.test", oidc, "b"),
            *app_objects(echo_port, "admins.homelab.test",
                         {**oidc, "pyingress.io/auth-allowed-groups": "admins"}, "admins"),
            *app_objects(echo_port, "lan.homelab.test",
                         {**oidc, "pyingress.io/allowlist-source-range": "127.0.0.2/32",
                          "pyingress.io/satisfy": "any"}, "lan"),
        ]
        folder = root / "manifests"
        folder.mkdir()
        write_manifests(folder / "objects.yaml", *objects)
        (root / "client-secret").write_text("pyingress-secret\n")
        (root / "cookie-secret").write_text("0123456789abcdef0123456789abcdef\n")
        echo.wait_for_port(echo_port)
        proxy = start_serve(
            folder, "--oidc-issuer", f"http://127.0.0.1:{idp_port}",
            "--oidc-client-id", "pyingress",
            "--oidc-client-secret-file", str(root / "client-secret"),
            "--oidc-cookie-secret-file", str(root / "cookie-secret"),
            "--oidc-cookie-domain", ".homelab.test",
            "--oidc-scopes", "openid email profile groups offline_access", http_port=port)
        started.append(proxy.process)
        yield Setup(port, idp_port, proxy.process)
    finally:
        for process in reversed(started):
            if "Traceback" in process.output:
                print(process.output[-8000:])
            process.stop()


def lowered(headers: object) -> dict[str, str]:
    """The echo backend's view of the request headers, names in lower case."""
    assert isinstance(headers, dict)
    return {str(k).lower(): str(v) for k, v in headers.items()}


def login_with_script(setup: Setup, user: str = "alice", password: str = "wonderland",
                      host: str = "a", start: str = "/") -> tuple[CookieBrowser, httpx.Response]:
    """Run the whole login with httpx; return the browser and the callback's answer."""
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url(host, start))
    assert first.status_code == 302, first.text
    callback = browser.sign_in_at_idp(first.headers["location"], user, password,
                                      f"http://{host}.homelab.test:{setup.port}/")
    return browser, browser.proxy(callback)


# -- scripted flow: the protocol details and every refusal -----------------------------------

def test_login_sets_session_and_backend_sees_identity(setup: Setup) -> None:
    browser, done = login_with_script(setup)
    assert done.status_code == 302
    assert done.headers["location"] == setup.url("a", "/")
    assert "_pyingress_oauth" in browser.cookies and "_pyingress_csrf" not in browser.cookies
    page = browser.proxy(setup.url("a", "/x"), headers={"X-Auth-Request-User": "mallory"})
    assert page.status_code == 200
    seen = lowered(page.json()["headers"])
    assert seen["x-auth-request-user"] == "alice"  # the forged copy was replaced
    assert seen["x-auth-request-email"] == "alice@home.example"
    assert seen["x-auth-request-groups"] == "admins,grafana-editors"
    assert seen["x-auth-request-preferred-username"] == "alice"
    assert "_pyingress" not in seen.get("cookie", "")  # the upstream never sees the session
    browser.close()


def test_authorization_request_uses_pkce_state_and_nonce(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url("a", "/"))
    query = parse_qs(urlsplit(first.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == [setup.url("a", "/oauth2/callback")]
    cookie = next(h for h in first.headers.get_list("set-cookie") if h.startswith("_pyingress_csrf="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/oauth2/" in cookie
    browser.close()


def test_api_requests_get_401_not_a_redirect(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 401
    assert browser.proxy(setup.url("a"), headers={"X-Requested-With": "XMLHttpRequest"}).status_code == 401
    upgrade = browser.proxy(setup.url("a"), headers={"Upgrade": "websocket"})
    assert upgrade.status_code == 401
    browser.close()


def test_websocket_upgrade_passes_with_session(setup: Setup) -> None:
    browser, _ = login_with_script(setup)
    response = browser.proxy(setup.url("a", "/ws"), headers={"Upgrade": "websocket"})
    # The echo backend answers an upgrade with plain JSON: the filter let it through, with the
    # identity attached (test_oidc_routes relays a real WebSocket).
    assert response.status_code == 200
    assert lowered(response.json()["headers"])["x-auth-request-user"] == "alice"
    browser.close()


def test_tampered_session_cookie_is_refused(setup: Setup) -> None:
    browser, _ = login_with_script(setup)
    value = browser.cookies["_pyingress_oauth"]
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 200
    flipped = value[:40] + ("A" if value[40] != "A" else "B") + value[41:]
    browser.cookies["_pyingress_oauth"] = flipped
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 401
    browser.cookies["_pyingress_oauth"] = value[:-2]
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 401
    browser.close()


def test_replayed_state_is_refused(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url("a"))
    csrf = browser.cookies["_pyingress_csrf"]
    callback = browser.sign_in_at_idp(first.headers["location"], "alice", "wonderland",
                                      setup.url("a", "/"))
    assert browser.proxy(callback).status_code == 302
    browser.cookies = {"_pyingress_csrf": csrf}  # an attacker replays the callback and cookie
    replay = browser.proxy(callback)
    assert replay.status_code == 403
    assert "_pyingress_oauth" not in browser.cookies
    browser.close()


def test_wrong_state_is_refused(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url("a"))
    callback = browser.sign_in_at_idp(first.headers["location"], "alice", "wonderland",
                                      setup.url("a", "/"))
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = "x" * 43
    forged = urlunsplit(parts._replace(query=urlencode(query)))
    assert browser.proxy(forged).status_code == 403
    browser.close()


def test_wrong_nonce_is_refused(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    first = browser.proxy(setup.url("a"))
    parts = urlsplit(first.headers["location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["nonce"] = "an-attacker-chosen-nonce-value-123456"
    tampered = urlunsplit(parts._replace(query=urlencode(query)))
    callback = browser.sign_in_at_idp(tampered, "alice", "wonderland", setup.url("a", "/"))
    answer = browser.proxy(callback)
    assert answer.status_code == 403
    assert "_pyingress_oauth" not in browser.cookies
    browser.close()


@pytest.mark.parametrize("rd", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                "http://a.homelab.test@evil.example/",
                                "http://evil.example\\@a.homelab.test/", "javascript:alert(1)"])
def test_open_redirect_in_rd_is_refused(setup: Setup, rd: str) -> None:
    browser = CookieBrowser(setup.port)
    start = browser.proxy(setup.url("a", "/oauth2/start?" + urlencode({"rd": rd})))
    assert start.status_code == 302
    callback = browser.sign_in_at_idp(start.headers["location"], "alice", "wonderland",
                                      setup.url("a", "/"))
    done = browser.proxy(callback)
    assert done.status_code == 302
    assert "evil" not in done.headers["location"] and "javascript" not in done.headers["location"]
    out = browser.proxy(setup.url("a", "/oauth2/sign_out?" + urlencode({"rd": rd})))
    assert "evil" not in out.headers["location"] and "javascript" not in out.headers["location"]
    browser.close()


def test_rd_to_a_served_host_is_followed(setup: Setup) -> None:
    browser = CookieBrowser(setup.port)
    target = setup.url("b", "/deep/page?q=1")
    start = browser.proxy(setup.url("a", "/oauth2/start?" + urlencode({"rd": target})))
    callback = browser.sign_in_at_idp(start.headers["location"], "alice", "wonderland",
                                      setup.url("a", "/"))
    assert browser.proxy(callback).headers["location"] == target
    browser.close()


def test_unlisted_user_gets_403(setup: Setup) -> None:
    browser, done = login_with_script(setup, "bob", "builder", host="admins")
    assert done.status_code == 302
    assert browser.proxy(setup.url("admins")).status_code == 403
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 200
    alice, _ = login_with_script(setup, host="admins")
    assert alice.proxy(setup.url("admins")).status_code == 200
    browser.close()
    alice.close()


def test_skip_paths_and_lan_allow_list(setup: Setup) -> None:
    assert httpx.get(f"http://127.0.0.1:{setup.port}/public/status",
                     headers={"Host": "a.homelab.test", "X-Auth-Request-User": "root"},
                     timeout=30).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{setup.port}/private",
                     headers={"Host": "a.homelab.test"}, timeout=30).status_code == 401
    lan = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30)
    inside = lan.get(f"http://127.0.0.1:{setup.port}/", headers={"Host": "lan.homelab.test"})
    assert inside.status_code == 200
    assert "x-auth-request-user" not in lowered(inside.json()["headers"])
    outside = httpx.get(f"http://127.0.0.1:{setup.port}/", headers={"Host": "lan.homelab.test"}, timeout=30)
    assert outside.status_code == 401
    lan.close()


def test_session_is_refreshed_before_expiry(setup: Setup) -> None:
    browser, _ = login_with_script(setup)
    first = browser.cookies["_pyingress_oauth"]

    def refreshed() -> bool:
        response = browser.proxy(setup.url("a"), accept="application/json")
        assert response.status_code == 200
        return browser.cookies["_pyingress_oauth"] != first

    wait_until(refreshed, timeout=TOKEN_TTL * 4, what="a refreshed session cookie")
    second = browser.cookies["_pyingress_oauth"]
    assert browser.proxy(setup.url("a"), accept="application/json").status_code == 200
    # The refreshed session keeps working past the first access token's lifetime.
    wait_until(lambda: browser.proxy(setup.url("a"), accept="application/json").status_code == 200
               and browser.cookies["_pyingress_oauth"] != second, timeout=TOKEN_TTL * 4,
               what="a second refresh")
    browser.close()


def test_auth_endpoint_for_forward_auth(setup: Setup) -> None:
    browser, _ = login_with_script(setup)
    answer = browser.proxy(setup.url("a", "/oauth2/auth"), accept="*/*")
    assert answer.status_code == 202
    assert answer.headers["x-auth-request-email"] == "alice@home.example"
    assert CookieBrowser(setup.port).proxy(setup.url("a", "/oauth2/auth")).status_code == 401
    browser.close()


# -- a real browser ---------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not chromium_available(),
    reason="needs apt chromium + chromium-driver and pip selenium")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[object]:
    driver = new_chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()  # type: ignore[attr-defined]


def page_json(driver: object) -> dict[str, object]:
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    return json.loads(text)  # type: ignore[no-any-return]


def browser_login(driver: object, setup: Setup, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)  # type: ignore[attr-defined]
    try:
        wait_until(lambda: driver.find_elements(By.ID, "user"), what="the login form")  # type: ignore[attr-defined]
    except AssertionError:
        raise AssertionError(f"no login form at {driver.current_url}: "  # type: ignore[attr-defined]
                             f"{driver.page_source[:500]}") from None  # type: ignore[attr-defined]
    assert driver.current_url.startswith(setup.issuer + "/interaction/")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "user").send_keys(user)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "password").send_keys(password)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "submit").click()  # type: ignore[attr-defined]


@needs_chromium
def test_browser_login_covers_subdomains_and_signs_out(setup: Setup, chromium: object) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    browser_login(driver, setup, setup.url("a", "/hello"), "alice", "wonderland")
    wait_until(lambda: driver.current_url == setup.url("a", "/hello"), what="back at a")  # type: ignore[attr-defined]
    seen = page_json(driver)
    headers = lowered(seen["headers"])
    assert headers["x-auth-request-user"] == "alice"
    assert headers["x-auth-request-groups"] == "admins,grafana-editors"
    cookie = next(c for c in driver.get_cookies() if c["name"] == "_pyingress_oauth")  # type: ignore[attr-defined]
    assert cookie["domain"] in (".homelab.test", "homelab.test") and cookie["httpOnly"]

    # A second subdomain: no second login.
    driver.get(setup.url("b", "/"))  # type: ignore[attr-defined]
    assert driver.current_url == setup.url("b", "/")  # type: ignore[attr-defined]
    assert lowered(page_json(driver)["headers"])["x-auth-request-email"] == "alice@home.example"

    # Sign out: our cookie goes, the provider's session ends (it asks to confirm), and the next
    # visit needs the login form again.
    driver.get(setup.url("a", "/oauth2/sign_out?rd=" + setup.url("a", "/")))  # type: ignore[attr-defined]
    assert not [c for c in driver.get_cookies() if c["name"].startswith("_pyingress_oauth")]  # type: ignore[attr-defined]
    confirm = driver.find_elements(By.CSS_SELECTOR, "button[type=submit]")  # type: ignore[attr-defined]
    if confirm:
        confirm[0].click()
    wait_until(lambda: driver.find_elements(By.ID, "user"), what="the login form after sign-out")  # type: ignore[attr-defined]
    driver.get(setup.url("b", "/"))  # type: ignore[attr-defined]
    assert driver.current_url.startswith(setup.issuer)  # type: ignore[attr-defined]


@needs_chromium
def test_browser_unlisted_user_gets_403(setup: Setup, chromium: object) -> None:
    driver = chromium
    browser_login(driver, setup, setup.url("admins", "/"), "bob", "builder")
    wait_until(lambda: driver.current_url.startswith(setup.url("admins", "/")), what="back at admins")  # type: ignore[attr-defined]
    assert "403" in driver.page_source  # type: ignore[attr-defined]


@needs_chromium
def test_browser_session_survives_token_expiry(setup: Setup, chromium: object) -> None:
    driver = chromium
    browser_login(driver, setup, setup.url("a", "/"), "alice", "wonderland")
    wait_until(lambda: driver.current_url == setup.url("a", "/"), what="back at a")  # type: ignore[attr-defined]
    first = next(c["value"] for c in driver.get_cookies() if c["name"] == "_pyingress_oauth")  # type: ignore[attr-defined]

    def refreshed() -> bool:
        driver.get(setup.url("b", "/after"))  # type: ignore[attr-defined]
        assert driver.current_url == setup.url("b", "/after")  # type: ignore[attr-defined]
        now = next(c["value"] for c in driver.get_cookies() if c["name"] == "_pyingress_oauth")  # type: ignore[attr-defined]
        return now != first

    wait_until(refreshed, timeout=TOKEN_TTL * 4, what="the browser's session to be refreshed")
    assert lowered(page_json(driver)["headers"])["x-auth-request-user"] == "alice"

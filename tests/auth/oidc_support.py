"""Test peers for the OIDC tests: the npm oidc-provider, headless Chromium, an httpx 'browser'."""

from __future__ import annotations

import shutil
import subprocess
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

IDP_DIR = Path(__file__).parent / "idp"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def ensure_idp_installed() -> None:
    """``npm ci`` in tests/auth/idp once (CI does the same); skip when npm cannot do it."""
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    if shutil.which("npm") is None:
        pytest.skip("needs node and npm for the oidc-provider test peer")
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"npm ci in {IDP_DIR.name} failed: {done.stderr[-300:]}")


def start_idp(port: int, redirect_uris: list[str], logout_uris: list[str], ttl: int,
              env: dict[str, str] | None = None) -> ManagedProcess:
    """The test provider on ``port``; ``env`` adds settings (JWKS_FILE, HIDDEN_KIDS)."""
    ensure_idp_installed()
    process = ManagedProcess(
        ["node", str(IDP_DIR / "provider.mjs")], cwd=str(IDP_DIR),
        env={"PORT": str(port), "REDIRECT_URIS": ",".join(redirect_uris),
             "POST_LOGOUT_URIS": ",".join(logout_uris), "TOKEN_TTL": str(ttl), **(env or {})})
    url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    wait_until(lambda: process.proc.poll() is None and httpx.get(url, timeout=5).status_code == 200,
               what="oidc-provider discovery")
    return process


class CookieBrowser:
    """A scripted browser for the negative tests: follows the login by hand, cookies by hand.

    The proxy is reached at 127.0.0.1 with a Host header (``a.homelab.test:PORT``), so its
    cookies are kept here explicitly; the provider is a normal httpx client with a jar.
    """

    def __init__(self, proxy_port: int) -> None:
        self.proxy_port = proxy_port
        self.cookies: dict[str, str] = {}
        self.idp = httpx.Client(timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.idp.close()

    def proxy(self, url: str, accept: str = "text/html", headers: dict[str, str] | None = None) -> httpx.Response:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Host": parts.netloc, "Accept": accept, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = httpx.get(f"http://127.0.0.1:{self.proxy_port}{target}", headers=sent, timeout=30)
        self.keep_cookies(response)
        return response

    def keep_cookies(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def sign_in_at_idp(self, authorize_url: str, user: str, password: str,
                       back_prefix: str) -> str:
        """Log in at the provider; return the callback URL it redirects to."""
        response = self.idp.get(authorize_url)
        for _ in range(10):
            location = response.headers.get("location")
            if response.status_code == 200 and "/interaction/" in str(response.url):
                response = self.idp.post(str(response.url), data={"login": user, "password": password})
                continue
            assert location, f"provider answered {response.status_code}: {response.text[:200]}"
            absolute = urljoin(str(response.url), location)
            if absolute.startswith(back_prefix):
                return absolute
            response = self.idp.get(absolute)
        raise AssertionError("the provider never redirected back")


def chromium_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def new_chromium(profile: Path) -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP *.homelab.test 127.0.0.1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

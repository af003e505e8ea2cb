"""Built-in OpenID Connect login: the authorization code flow and the sessions it makes.

The flow (oauth2-proxy's, in process): a browser without a session is sent to the provider
with PKCE (S256), a ``state`` and a ``nonce``; those three live in a short-lived encrypted
state cookie scoped to ``/oauth2/``, so the callback only works in the browser that started the
login, and each ``state`` is accepted once. The callback exchanges the code, validates the ID
token and sets an encrypted session cookie (optionally for a parent domain, so one login covers
every subdomain). Sessions are refreshed with the refresh token shortly before the access
token expires.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from pyingress.auth.cookies import (
    SESSION_COOKIE,
    STATE_COOKIE,
    CookieJar,
    Sealer,
    joined,
    parse_cookies,
)
from pyingress.auth.options import OIDCSettings
from pyingress.auth.policy import OIDCClient
from pyingress.auth.provider import Provider, ProviderError
from pyingress.routing.table import RouteTable, TableHolder

log = logging.getLogger("pyingress.auth")

CALLBACK_PATH = "/oauth2/callback"
STATE_LIFETIME = 600
USED_STATES = 10000
REFRESH_MARGIN = 60.0


@dataclass
class Session:
    """Who is signed in, as kept (encrypted) in the session cookie."""

    client_key: str
    user: str
    email: str = ""
    groups: tuple[str, ...] = ()
    preferred_username: str = ""
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0
    issued_at: float = 0.0

    def to_payload(self) -> dict[str, Any]:
        return {
            "k": self.client_key, "u": self.user, "e": self.email, "g": list(self.groups),
            "p": self.preferred_username, "a": self.access_token, "r": self.refresh_token,
            "x": self.expires_at, "i": self.issued_at,
        }  # fmt: skip

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Session | None:
        try:
            return cls(
                client_key=str(payload["k"]), user=str(payload["u"]), email=str(payload["e"]),
                groups=tuple(str(g) for g in payload["g"]), preferred_username=str(payload["p"]),
                access_token=str(payload["a"]), refresh_token=str(payload["r"]),
                expires_at=float(payload["x"]), issued_at=float(payload["i"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None

    def needs_refresh(self, now: float) -> bool:
        margin = min(REFRESH_MARGIN, max(0.0, (self.expires_at - self.issued_at) / 4))
        return now >= self.expires_at - margin

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class LoginError(Exception):
    """A callback that cannot complete a login; the message is safe to show the user."""


class OIDCService:
    """Logins, sessions and providers for the whole process."""

    def __init__(self, settings: OIDCSettings, holder: TableHolder) -> None:
        self.settings = settings
        self.holder = holder
        self.sealer = Sealer(settings.cookie_secret)
        self.jar = CookieJar(settings.cookie_domain)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0), follow_redirects=False, trust_env=False
        )
        self._providers: dict[str, Provider] = {}
        self._used_states: OrderedDict[str, float] = OrderedDict()

    @property
    def table(self) -> RouteTable:
        return self.holder.table

    def provider_for(self, client: OIDCClient | None) -> Provider | None:
        """The provider of a route's client (None: the process-wide one, if configured)."""
        chosen = client or self.settings.client
        if chosen is None:
            return None
        provider = self._providers.get(chosen.key)
        if provider is None or provider.client != chosen:
            provider = self._providers[chosen.key] = Provider(chosen, self.http)
        return provider

    def provider_by_key(self, key: str) -> Provider | None:
        return self._providers.get(key)

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- sessions ---------------------------------------------------------------------------

    def read_session(self, cookie_header: bytes | None) -> Session | None:
        cookies = parse_cookies(cookie_header)
        payload = self.sealer.open(SESSION_COOKIE, joined(cookies, SESSION_COOKIE))
        return Session.from_payload(payload) if payload is not None else None

    def session_cookies(
        self, session: Session, host: str, secure: bool, cookie_header: bytes | None
    ) -> list[bytes]:
        lifetime = self.settings.cookie_lifetime
        value = self.sealer.seal(SESSION_COOKIE, session.to_payload(), lifetime)
        present = parse_cookies(cookie_header)
        return self.jar.set_split(SESSION_COOKIE, value, host, secure, lifetime, present)

    def clear_session_cookies(
        self, host: str, secure: bool, cookie_header: bytes | None
    ) -> list[bytes]:
        names = {name for name in parse_cookies(cookie_header) if name.startswith(SESSION_COOKIE)}
        names.add(SESSION_COOKIE)
        return [header for name in sorted(names) for header in self.jar.clear(name, host, secure)]

    async def refresh(self, session: Session) -> Session | None:
        """A refreshed session, or None when the provider refuses (the user logs in again)."""
        provider = self.provider_by_key(session.client_key)
        if provider is None or not session.refresh_token:
            return None
        try:
            tokens = await provider.refresh(session.refresh_token)
            claims: dict[str, Any] = {}
            if tokens.get("id_token"):
                claims = await provider.validate_id_token(str(tokens["id_token"]), None)
                if claims.get("sub") != session.user:
                    raise ProviderError("the refreshed ID token names another user")
        except ProviderError as exc:
            log.info("session refresh refused user=%s reason=%s", session.user, exc)
            return None
        return self._session(provider, claims, tokens, previous=session)

    # -- login ------------------------------------------------------------------------------

    async def begin_login(
        self, provider: Provider, scheme: str, host: str, back: str
    ) -> tuple[str, list[bytes]]:
        """Where to send the browser and the state cookie to set; ``back`` is already safe."""
        redirect_uri = self.settings.redirect_url or f"{scheme}://{host}{CALLBACK_PATH}"
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        authorize = await provider.endpoint("authorization_endpoint")
        if not authorize:
            raise ProviderError("the provider has no authorization endpoint")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": provider.client.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        payload = {
            "s": state, "n": nonce, "v": verifier, "rd": back, "k": provider.client.key,
            "cb": redirect_uri,
        }  # fmt: skip
        value = self.sealer.seal(STATE_COOKIE, payload, STATE_LIFETIME)
        cookie = self.jar.set(
            STATE_COOKIE, value, host, scheme == "https", STATE_LIFETIME, "/oauth2/"
        )
        joiner = "&" if "?" in authorize else "?"
        return f"{authorize}{joiner}{query}", [cookie]

    async def finish_login(
        self, params: dict[str, str], cookie_header: bytes | None
    ) -> tuple[Session, str]:
        """Check the callback against the state cookie, redeem the code: ``(session, rd)``."""
        cookies = parse_cookies(cookie_header)
        state = self.sealer.open(STATE_COOKIE, cookies.get(STATE_COOKIE))
        if state is None:
            raise LoginError("the login expired or was started in another browser")
        if not hmac.compare_digest(str(state.get("s", "")), params.get("state", "")):
            raise LoginError("the login state does not match")
        if not self._use_state(str(state["s"])):
            raise LoginError("this login was already completed")
        provider = self.provider_by_key(str(state.get("k", "")))
        if provider is None:
            raise LoginError("the login names an unknown provider")
        if "error" in params:
            raise LoginError(f"the provider refused the login: {params['error'][:64]}")
        try:
            issuer = (await provider.metadata())["issuer"]
            if "iss" in params and params["iss"] != issuer:
                raise LoginError("the callback comes from another issuer")
            tokens = await provider.exchange_code(
                params.get("code", ""), str(state["v"]), str(state["cb"])
            )
            if not tokens.get("id_token"):
                raise LoginError("the provider sent no ID token")
            claims = await provider.validate_id_token(str(tokens["id_token"]), str(state["n"]))
            claims = await self._with_userinfo(provider, claims, tokens)
        except ProviderError as exc:
            log.warning("login failed issuer=%s reason=%s", provider.issuer, exc)
            raise LoginError("the login could not be completed with the provider") from None
        return self._session(provider, claims, tokens), str(state.get("rd") or "/")

    async def _with_userinfo(
        self, provider: Provider, claims: dict[str, Any], tokens: dict[str, Any]
    ) -> dict[str, Any]:
        """Fill email/groups from userinfo when the ID token leaves them out."""
        if claims.get("email") and self.settings.groups_claim in claims:
            return claims
        info = await provider.userinfo(str(tokens["access_token"]))
        if info.get("sub") != claims.get("sub"):
            return claims
        return {**info, **claims}

    def _session(
        self,
        provider: Provider,
        claims: dict[str, Any],
        tokens: dict[str, Any],
        previous: Session | None = None,
    ) -> Session:
        now = time.time()
        lifetime = _number(tokens.get("expires_in")) or _number(claims.get("exp"), now) or 300.0
        base = previous or Session(provider.client.key, str(claims.get("sub", "")))
        groups = claims.get(self.settings.groups_claim, list(base.groups))
        if isinstance(groups, str):
            groups = [groups]
        return Session(
            client_key=provider.client.key,
            user=str(claims.get("sub", base.user)),
            email=str(claims.get("email", base.email)),
            groups=tuple(str(group) for group in groups if isinstance(group, str | int)),
            preferred_username=str(claims.get("preferred_username", base.preferred_username)),
            access_token=str(tokens.get("access_token", "")),
            refresh_token=str(tokens.get("refresh_token") or base.refresh_token),
            expires_at=now + lifetime,
            issued_at=now,
        )

    def _use_state(self, state: str) -> bool:
        now = time.monotonic()
        while self._used_states:
            oldest, when = next(iter(self._used_states.items()))
            if now - when < STATE_LIFETIME and len(self._used_states) < USED_STATES:
                break
            del self._used_states[oldest]
        if state in self._used_states:
            return False
        self._used_states[state] = now
        return True


def _number(value: object, now: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > now:
        return float(value) - now
    return 0.0

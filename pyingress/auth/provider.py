"""One OpenID Connect provider as a client sees it: discovery, JWKS, token and userinfo calls.

ID tokens are checked with ``joserfc`` (authlib's JOSE successor, which authlib itself depends
on): signature against the provider's JWKS, ``iss``, ``aud``, ``exp`` and, after a login, the
``nonce``. A token signed with a key id we do not know makes us fetch the JWKS again (the
provider rotated its keys), at most once per :data:`JWKS_REFRESH_INTERVAL`; the first fetch
does not count, so a rotation soon after we started is still followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from pyingress.auth.policy import OIDCClient

log = logging.getLogger("pyingress.auth")

JWKS_REFRESH_INTERVAL = 30.0
DISCOVERY_RETRY = 10.0
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
"""Asymmetric algorithms only: never ``none``, never a MAC keyed with the client secret."""
LEEWAY = 60


class ProviderError(Exception):
    """The provider could not be reached or answered something we cannot accept."""


class Provider:
    """Talks to one provider for one client registration."""

    def __init__(self, client: OIDCClient, http: httpx.AsyncClient) -> None:
        self.client = client
        self.http = http
        self.issuer = client.issuer.rstrip("/")
        self._metadata: dict[str, Any] | None = None
        self._metadata_failed_at = -DISCOVERY_RETRY
        self._keys: KeySet | None = None
        self._refetched_at = -JWKS_REFRESH_INTERVAL
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once (retried after a failure, not on every call)."""
        if self._metadata is not None:
            return self._metadata
        async with self._lock:
            if self._metadata is not None:
                return self._metadata
            if time.monotonic() - self._metadata_failed_at < DISCOVERY_RETRY:
                raise ProviderError("discovery failed recently")
            try:
                document = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            except ProviderError:
                self._metadata_failed_at = time.monotonic()
                raise
            if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                self._metadata_failed_at = time.monotonic()
                raise ProviderError("the discovery document names another issuer")
            self._metadata = document
            return document

    async def endpoint(self, name: str) -> str | None:
        value = (await self.metadata()).get(name)
        return str(value) if value else None

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            }
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        url = await self.endpoint("userinfo_endpoint")
        if not url:
            return {}
        return await self._get_json(url, {"Authorization": f"Bearer {access_token}"})

    async def validate_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        """The claims of a valid ID token; raises ProviderError otherwise."""
        metadata = await self.metadata()
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in ALGORITHMS if alg in offered]
        keys = await self._key_set(force=False)
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                decoded = jwt.decode(token, await self._key_set(force=True), algorithms=algorithms)
            claims = dict(decoded.claims)
            rules: dict[str, Any] = {
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": self.client.client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
            }
            if nonce is not None:
                rules["nonce"] = {"essential": True, "value": nonce}
            jwt.JWTClaimsRegistry(leeway=LEEWAY, **rules).validate(claims)
        except (JoseError, ValueError) as exc:
            raise ProviderError(f"ID token refused: {exc}") from None
        audience = claims.get("aud")
        several = isinstance(audience, list) and len(audience) > 1
        if several and claims.get("azp") != self.client.client_id:
            raise ProviderError("ID token refused: azp does not name this client")
        return claims

    async def _key_set(self, force: bool) -> KeySet:
        """The cached keys; ``force`` (an unknown key id) fetches them again, rate-limited."""
        cached = self._keys
        if cached is not None and not force:
            return cached
        async with self._lock:
            if self._keys is not None and self._keys is not cached:
                return self._keys  # fetched by another request while this one waited
            if self._keys is not None:
                if time.monotonic() - self._refetched_at < JWKS_REFRESH_INTERVAL:
                    return self._keys
                self._refetched_at = time.monotonic()  # a failed refetch counts too
            document = await self._get_json(await self._jwks_uri())
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise ProviderError(f"the JWKS cannot be used: {exc}") from None
            return self._keys

    async def _jwks_uri(self) -> str:
        metadata = self._metadata
        if metadata is None or not metadata.get("jwks_uri"):
            raise ProviderError("the provider publishes no jwks_uri")
        return str(metadata["jwks_uri"])

    async def _token(self, form: dict[str, str]) -> dict[str, Any]:
        url = await self.endpoint("token_endpoint")
        if not url:
            raise ProviderError("the provider has no token endpoint")
        auth = httpx.BasicAuth(self.client.client_id, self.client.client_secret)
        try:
            response = await self.http.post(url, data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise ProviderError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            error = _error_code(response)
            raise ProviderError(f"token endpoint answered {response.status_code} {error}")
        body = _json_object(response)
        if not body.get("access_token"):
            raise ProviderError("token endpoint answered without an access token")
        return body

    async def _get_json(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderError(f"{url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderError(f"{url} answered {response.status_code}")
        return _json_object(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderError("the provider answered something that is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError("the provider answered JSON that is not an object")
    return body


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", ""))[:64] if isinstance(body, dict) else ""

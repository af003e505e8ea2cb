"""Encrypted, authenticated cookies for the login session and the login's state.

Values are AES-256-GCM sealed JSON with their own expiry inside, so a copied or edited cookie
is refused no matter what the browser does with ``Max-Age``. The cookie's purpose is the
associated data: a state cookie can never be replayed as a session cookie. Values that would
not fit in one cookie are split into ``NAME_0..NAME_n`` like oauth2-proxy does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_COOKIE = "_pyingress_oauth"
STATE_COOKIE = "_pyingress_csrf"
COOKIE_PREFIX = "_pyingress_"
CHUNK_SIZE = 3800
"""Bytes of value per cookie; browsers keep at least 4096 per cookie including attributes."""
MAX_CHUNKS = 6
VERSION = b"\x01"


class Sealer:
    """Seals and opens cookie values with a key derived from the cookie secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cookie secret must be at least 16 bytes")
        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"pyingress cookie v1").derive(secret)
        self._aead = AESGCM(key)

    def seal(self, purpose: str, payload: Mapping[str, Any], lifetime: float) -> str:
        body = json.dumps({**payload, "_exp": int(time.time() + lifetime)}).encode()
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, body, purpose.encode())
        return base64.urlsafe_b64encode(VERSION + nonce + sealed).rstrip(b"=").decode()

    def open(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The payload, or None for a missing, forged, edited, foreign or expired value."""
        if not value or len(value) > CHUNK_SIZE * MAX_CHUNKS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 1 + 12 + 16 or raw[:1] != VERSION:
            return None
        try:
            body = self._aead.decrypt(raw[1:13], raw[13:], purpose.encode())
            payload = json.loads(body)
        except (InvalidTag, ValueError):
            return None
        if not isinstance(payload, dict) or payload.get("_exp", 0) < time.time():
            return None
        return payload


def parse_cookies(header: bytes | None) -> dict[str, str]:
    """``name -> value`` from a Cookie header (first value of a name wins)."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for part in header.decode("latin-1").split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def strip_own_cookies(header: bytes) -> bytes:
    """The Cookie header without pyingress's cookies: upstreams never see the session."""
    kept = [
        part.strip()
        for part in header.split(b";")
        if part.strip() and not part.strip().startswith(COOKIE_PREFIX.encode())
    ]
    return b"; ".join(kept)


def joined(cookies: Mapping[str, str], name: str) -> str | None:
    """A possibly split cookie value: ``name`` itself or ``name_0 + name_1 + ...``."""
    if name in cookies:
        return cookies[name]
    parts = []
    for index in range(MAX_CHUNKS):
        part = cookies.get(f"{name}_{index}")
        if part is None:
            break
        parts.append(part)
    return "".join(parts) or None


class CookieJar:
    """Builds ``Set-Cookie`` values with the attributes every pyingress cookie shares."""

    def __init__(self, domain: str = "") -> None:
        self.domain = domain.lower().lstrip(".")

    def domain_for(self, host: str) -> str:
        """The parent domain to use for ``host``, or "" (host-only) when it is not below it."""
        name = hostname_of(host).lower()
        if self.domain and (name == self.domain or name.endswith("." + self.domain)):
            return self.domain
        return ""

    def set(
        self, name: str, value: str, host: str, secure: bool, max_age: int, path: str = "/"
    ) -> bytes:
        attributes = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}"]
        domain = self.domain_for(host)
        if domain:
            attributes.append(f"Domain={domain}")
        attributes += ["HttpOnly", "SameSite=Lax"]
        if secure:
            attributes.append("Secure")
        return "; ".join(attributes).encode()

    def set_split(
        self, name: str, value: str, host: str, secure: bool, max_age: int, present: Iterable[str]
    ) -> list[bytes]:
        """Set ``name`` (split if large) and expire chunks of an older value not reused."""
        if len(value) <= CHUNK_SIZE:
            names = {name: value}
        else:
            chunks = [value[i : i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)]
            names = {f"{name}_{index}": chunk for index, chunk in enumerate(chunks)}
        headers = [self.set(key, chunk, host, secure, max_age) for key, chunk in names.items()]
        for old in present:
            if old not in names and (old == name or old.startswith(name + "_")):
                headers.extend(self.clear(old, host, secure))
        return headers

    def clear(self, name: str, host: str, secure: bool, path: str = "/") -> list[bytes]:
        """Expire ``name`` both host-only and on the parent domain (either may exist)."""
        headers = [f"{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax".encode()]
        domain = self.domain_for(host)
        if domain:
            headers.append(
                f"{name}=; Path={path}; Domain={domain}; Max-Age=0; HttpOnly; SameSite=Lax".encode()
            )
        if secure:
            headers = [header + b"; Secure" for header in headers]
        return headers


def hostname_of(host: str) -> str:
    """``host`` without its port (IPv6 literals keep their brackets)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host

"""htpasswd parsing and password checks with the same answers as nginx's ``auth_basic``.

nginx (``src/core/ngx_crypt.c``) handles ``$apr1$``, ``{PLAIN}``, ``{SSHA}`` and ``{SHA}``
itself and hands every other stored value to libc ``crypt()``. We dispatch on the same
prefixes, in the same order, and use libxcrypt through the ``crypt-r`` package for the rest
(bcrypt, md5/sha256/sha512-crypt, yescrypt, DES). A bare plaintext entry is therefore treated
as a DES hash and never matches, exactly as in nginx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
from collections.abc import Iterable
from typing import Any

_crypt: Any
try:
    _crypt = importlib.import_module("crypt_r")
except ImportError:  # pragma: no cover - only where crypt-r is not installed
    _crypt = None

MAX_PASSWORD_BYTES = 4096
"""Longer passwords never match; bounds the work one request can ask for."""

APR1 = "$apr1$"
CHEAP_PREFIXES = ("{PLAIN}", "{SHA}", "{SSHA}")
"""Formats checked inline: one hash operation, no key stretching."""

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class HtpasswdError(ValueError):
    """An htpasswd file or auth-map that cannot be used; never quotes a hash."""


def parse_htpasswd(text: str) -> tuple[tuple[str, str], ...]:
    """``(user, stored)`` pairs of an htpasswd file; the first entry of a user wins (as nginx).

    Blank lines and ``#`` comments are skipped; a line without ``:`` is an error naming the
    line number only.
    """
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, stored = line.partition(":")
        if not colon or not user:
            raise HtpasswdError(f"line {number} is not user:hash")
        # nginx stops the hash at the next ':' (htpasswd files may carry extra fields).
        users.setdefault(user, stored.split(":", 1)[0])
    return tuple(users.items())


def parse_auth_map(entries: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``auth-map`` Secrets: each key is a user name, each value the stored hash."""
    users = []
    for user, stored in entries:
        value = stored.strip()
        if not user or ":" in user:
            raise HtpasswdError("an auth-map key is not a valid user name")
        users.append((user, value))
    return tuple(sorted(users))


def is_cheap(stored: str) -> bool:
    """Whether checking ``stored`` is cheap enough to do on the event loop."""
    return stored.startswith(CHEAP_PREFIXES)


def verify(password: bytes, stored: str) -> bool:
    """Whether ``password`` matches the stored value, with nginx's rules. Never raises."""
    if len(password) > MAX_PASSWORD_BYTES:
        return False
    try:
        if stored.startswith(APR1):
            return _same(apr1_crypt(password, stored), stored)
        if stored.startswith("{PLAIN}"):
            return hmac.compare_digest(password, stored[7:].encode())
        if stored.startswith("{SHA}"):
            digest = base64.b64encode(hashlib.sha1(password).digest()).decode()
            return _same("{SHA}" + digest, stored)
        if stored.startswith("{SSHA}"):
            return _verify_ssha(password, stored[6:])
        return _verify_crypt(password, stored)
    except (ValueError, UnicodeError):
        return False


def _same(computed: str | None, stored: str) -> bool:
    if computed is None:
        return False
    return hmac.compare_digest(computed.encode(), stored.encode())


def _verify_ssha(password: bytes, encoded: str) -> bool:
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) <= 20:
        return False
    digest, salt = raw[:20], raw[20:]
    return hmac.compare_digest(hashlib.sha1(password + salt).digest(), digest)


def _verify_crypt(password: bytes, stored: str) -> bool:
    if _crypt is None:
        return _verify_bcrypt_fallback(password, stored)
    if b"\x00" in password:
        return False
    # crypt(3) works on C strings: decode bytes 1:1 so no byte sequence is rejected.
    computed = _crypt.crypt(password.decode("latin-1"), stored)
    return _same(computed, stored)


def _verify_bcrypt_fallback(password: bytes, stored: str) -> bool:
    """bcrypt without libxcrypt: the pyca package, with libxcrypt's 72-byte truncation."""
    if not stored.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    import bcrypt

    return bool(bcrypt.checkpw(password[:72], stored.encode()))


def apr1_crypt(password: bytes, stored: str) -> str:
    """Apache's MD5 crypt variant (``$apr1$salt$hash``) for the salt in ``stored``."""
    salt = stored[len(APR1) :].split("$", 1)[0][:8].encode()
    magic = APR1.encode()
    alternate = hashlib.md5(password + salt + password).digest()
    context = hashlib.md5(password + magic + salt)
    length = len(password)
    while length > 0:
        context.update(alternate[: min(16, length)])
        length -= 16
    length = len(password)
    while length:
        context.update(b"\x00" if length & 1 else password[:1])
        length >>= 1
    final = context.digest()
    for round_number in range(1000):
        step = hashlib.md5()
        step.update(password if round_number & 1 else final)
        if round_number % 3:
            step.update(salt)
        if round_number % 7:
            step.update(password)
        step.update(final if round_number & 1 else password)
        final = step.digest()
    groups = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    encoded = "".join(_to64((final[a] << 16) | (final[b] << 8) | final[c], 4) for a, b, c in groups)
    encoded += _to64(final[11], 2)
    return f"{APR1}{salt.decode('latin-1')}${encoded}"


def _to64(value: int, count: int) -> str:
    chars = []
    for _ in range(count):
        chars.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(chars)

"""Answers the CA's HTTP-01 requests on port 80: from this process's pending tokens, and in a
cluster from the challenge Secret every replica watches (the leader publishes there)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from pyingress.model import ObjectRef, Snapshot

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
TOKEN = re.compile(r"[A-Za-z0-9_-]+")
"""An ACME token: base64url without padding (RFC 8555 §8.3), also a valid Secret data key."""


SHARED_TOKEN_GRACE = 3.0
"""Seconds an unknown token may take to reach this replica through the shared Secret."""


class ChallengeResponder:
    """An ASGI app serving ``/.well-known/acme-challenge/<token>`` while a challenge is pending.

    Mount it on the plain-HTTP listener ahead of the HTTPS redirect (the CA does not follow a
    redirect to a certificate it has not issued yet). Answers are idempotent: the CA's
    validators fetch the same token several times, from several places.

    With ``shared`` (cluster mode), :meth:`update` also takes the tokens of that Secret from
    each snapshot, so a replica answers challenges another replica ordered: behind one address
    the CA's validation request may land on any of them.
    """

    def __init__(self, shared: ObjectRef | None = None) -> None:
        self.shared = shared
        self._tokens: dict[str, str] = {}
        self._shared_tokens: dict[str, str] = {}
        self._updated = asyncio.Event()
        self.waiting = 0
        """Requests waiting for their token to arrive through the shared Secret."""

    def add(self, token: str, key_authorization: str) -> None:
        self._tokens[token] = key_authorization

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)

    async def publish(self, token: str, key_authorization: str) -> None:
        """:class:`~pyingress.tls.acme.client.TokenPublisher`: answer here only."""
        self.add(token, key_authorization)

    async def withdraw(self, token: str) -> None:
        self.remove(token)

    def __len__(self) -> int:
        return len(self._tokens)

    def pending(self) -> set[str]:
        """The tokens this process published and has not withdrawn."""
        return set(self._tokens)

    def answer(self, token: str) -> str | None:
        """The key authorization to serve for ``token``, or None (a 404)."""
        if not TOKEN.fullmatch(token):
            return None
        return self._tokens.get(token) or self._shared_tokens.get(token)

    def update(self, snapshot: Snapshot) -> None:
        """Take the shared tokens from ``snapshot`` (nothing to do without ``shared``)."""
        if self.shared is None:
            return
        obj = snapshot.get("Secret", self.shared.namespace, self.shared.name)
        self._shared_tokens = shared_tokens(obj)
        self._updated.set()
        self._updated = asyncio.Event()

    async def wait_shared(self, token: str, timeout: float) -> bool:
        """Wait until a snapshot carries ``token`` in the shared Secret; False on timeout."""
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                while token not in self._shared_tokens:
                    await self._updated.wait()
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        # Mounted under the prefix, some servers hand over the path without it.
        token = path[len(CHALLENGE_PREFIX) :] if path.startswith(CHALLENGE_PREFIX) else path[1:]
        answer = self.answer(token)
        # The leader asks the CA to validate once its own watch saw the token; this replica's
        # watch may be a moment behind, so give it that moment.
        late = answer is None and self.shared is not None and bool(TOKEN.fullmatch(token))
        if late and await self.wait_shared(token, SHARED_TOKEN_GRACE):
            answer = self.answer(token)
        if answer is None or scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 404, b"no such ACME challenge\n")
            return
        await _respond(send, 200, answer.encode(), scope.get("method") == "HEAD")


def shared_tokens(secret: Mapping[str, Any] | None) -> dict[str, str]:
    """Token -> key authorization from a challenge Secret's ``data``.

    Entries that cannot be a key authorization for their key (not ``<token>.<thumbprint>``,
    not base64, not ASCII) are skipped, so a stray key never becomes an answer.
    """
    tokens: dict[str, str] = {}
    data = (secret or {}).get("data") or {}
    if not isinstance(data, Mapping):
        return tokens
    for token, encoded in data.items():
        if not isinstance(token, str) or not TOKEN.fullmatch(token):
            continue
        try:
            value = base64.b64decode(str(encoded), validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            continue
        thumbprint = value.removeprefix(f"{token}.")
        if thumbprint != value and TOKEN.fullmatch(thumbprint):
            tokens[token] = value
    return tokens


async def _respond(send: Send, status: int, body: bytes, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})

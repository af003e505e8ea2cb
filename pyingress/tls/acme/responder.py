"""Answers the CA's HTTP-01 requests on port 80 from the map of pending tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class ChallengeResponder:
    """An ASGI app serving ``/.well-known/acme-challenge/<token>`` while a challenge is pending.

    Mount it on the plain-HTTP listener ahead of the HTTPS redirect (the CA does not follow a
    redirect to a certificate it has not issued yet). Answers are idempotent: the CA's
    validators fetch the same token several times, from several places.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    def add(self, token: str, key_authorization: str) -> None:
        self._tokens[token] = key_authorization

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)

    def __len__(self) -> int:
        return len(self._tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        # Mounted under the prefix, some servers hand over the path without it.
        token = path[len(CHALLENGE_PREFIX) :] if path.startswith(CHALLENGE_PREFIX) else path[1:]
        answer = self._tokens.get(token) if token and "/" not in token else None
        if answer is None or scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 404, b"no such ACME challenge\n")
            return
        await _respond(send, 200, answer.encode(), scope.get("method") == "HEAD")


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

"""Failure injection and the request log: test hooks that act before a request is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_apiserver.errors import ApiError


@dataclass
class Injection:
    status: int
    count: int
    path_prefix: str = ""
    retry_after: int = 1


@dataclass
class Faults:
    injections: list[Injection] = field(default_factory=list)
    unavailable: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)

    def inject(self, status: int, count: int = 1, path_prefix: str = "",
               retry_after: int = 1) -> None:
        if status not in (429, 500, 503):
            raise ValueError("only 429, 500 and 503 can be injected")
        self.injections.append(Injection(status, count, path_prefix, retry_after))

    def clear(self) -> None:
        self.injections.clear()
        self.unavailable = False

    def record(self, method: str, path: str, query: str, content_type: str) -> None:
        self.requests.append(
            {"method": method, "path": path, "query": query, "contentType": content_type}
        )

    def check(self, path: str) -> None:
        """Raise the error a request should get instead of being served, if any."""
        if self.unavailable:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle "
                           "the request (outage injected by a test)")
        for injection in self.injections:
            if path.startswith(injection.path_prefix):
                injection.count -= 1
                if injection.count <= 0:
                    self.injections.remove(injection)
                raise _error(injection)


def _error(injection: Injection) -> ApiError:
    if injection.status == 429:
        return ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                        {"causes": [{"message": "injected by a test"}],
                         "retryAfterSeconds": injection.retry_after},
                        headers={"Retry-After": str(injection.retry_after)})
    if injection.status == 503:
        return ApiError(503, "ServiceUnavailable", "injected by a test",
                        headers={"Retry-After": str(injection.retry_after)})
    return ApiError(500, "InternalError", "Internal error occurred: injected by a test",
                    {"causes": [{"message": "injected by a test"}]})

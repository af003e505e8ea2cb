"""API errors as ``Status`` bodies (API conventions, "Response Status Kind")."""

from __future__ import annotations

from typing import Any

from tests.support.fake_apiserver.resources import Resource

JSON = dict[str, Any]


class ApiError(Exception):
    """Raised anywhere in a handler; the app turns it into a Status response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:  # StatusReasonUnknown is "" and Go's omitempty drops it
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(resource: Resource, name: str, **extra: Any) -> JSON:
    details: JSON = {"name": name, "group": resource.group, "kind": resource.plural}
    if not resource.group:
        del details["group"]
    details.update(extra)
    return details


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found',
                    _details(resource, name))


def already_exists(resource: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists',
                    _details(resource, name))


def conflict(resource: Resource, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(resource, name))


def precondition_conflict(
    resource: Resource, name: str, what: str, want: str, have: str
) -> ApiError:
    """``what`` is ``UID`` or ``ResourceVersion``, as in the real message."""
    message = (
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": Precondition failed: '
        f"{what} in precondition: {want}, {what} in object meta: {have}"
    )
    return ApiError(409, "Conflict", message, _details(resource, name))


def invalid(resource: Resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one cause per (field, message), like field.ErrorList.ToAggregate()."""
    text = ", ".join(f"{field}: {msg}" for field, msg in causes)
    qualified_kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    message = f'{qualified_kind} "{name}" is invalid: {text}'
    details = _details(resource, name, kind=resource.kind, causes=[
        {"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes
    ])
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def internal(message: str) -> ApiError:
    """A storage error that is no ``metav1.Status``: v1.20 answers 500 with the bare message,
    no reason and no details (``responsewriters.ErrorToAPIStatus``)."""
    return ApiError(500, "", message)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({method})")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (got {content_type!r})")


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": path}]})


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large_rv(requested: int, current: int) -> ApiError:
    return ApiError(504, "Timeout",
                    f"Too large resource version: {requested}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})

"""What can be wrong with one object, reported without stopping the others."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pyingress.model.snapshot import ObjectRef


class Severity(StrEnum):
    ERROR = "error"
    """The object (or the part named) is skipped."""
    WARNING = "warning"
    """The object is served, but not entirely as written."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about one object; becomes a log line, an Event and a ``check`` row.

    ``reason`` is a short CamelCase word, as in a Kubernetes Event (``InvalidPath``,
    ``ServiceNotFound``); ``message`` says what is wrong and what to do, and never quotes
    secret material.
    """

    ref: ObjectRef
    reason: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.ref}: {self.reason}: {self.message}"

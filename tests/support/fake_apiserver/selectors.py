"""Label and field selectors (``labelSelector=``/``fieldSelector=`` query parameters).

Label syntax follows ``k8s.io/apimachinery/pkg/labels``: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``, joined by commas (AND).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.fake_apiserver.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if depth != 0:
        raise bad_request(f"unable to parse requirement: unbalanced parentheses in {text!r}")
    return [p.strip() for p in parts if p.strip()]


def _set_values(text: str) -> set[str]:
    inner = text.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        raise bad_request(f"unable to parse requirement: expected '(' in {text!r}")
    return {v.strip() for v in inner[1:-1].split(",") if v.strip()}


def _label_requirement(term: str) -> Callable[[dict[str, str]], bool]:
    words = term.split(None, 1)
    if len(words) == 2 and words[1].startswith(("in ", "in(", "notin ", "notin(")):
        key, rest = words
        negate = rest.startswith("notin")
        values = _set_values(rest[len("notin"):] if negate else rest[len("in"):])
        if negate:
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (part.strip() for part in term.split(op, 1))
            if not key:
                raise bad_request(f"unable to parse requirement: empty key in {term!r}")
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if " " in term or not term:
        raise bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: term in labels


def label_selector(text: str | None) -> Predicate:
    if not text:
        return lambda obj: True
    requirements = [_label_requirement(term) for term in _split_top_level(text)]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(req(labels) for req in requirements)

    return matches


def _field_value(obj: dict[str, Any], path: str) -> str | None:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    if current is None:
        return None
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


SUPPORTED_FIELDS = {
    "metadata.name", "metadata.namespace", "spec.type", "type", "spec.nodeName",
    "involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "reason",
    "regarding.kind", "regarding.name", "status.phase", "spec.controller", "addressType",
}


def field_selector(text: str | None) -> Predicate:
    """Field selectors support only ``=``, ``==`` and ``!=`` on a fixed set of fields per type."""
    if not text:
        return lambda obj: True
    checks: list[tuple[str, str, bool]] = []
    for term in _split_top_level(text):
        for op in ("!=", "==", "="):
            if op in term:
                field, value = (part.strip() for part in term.split(op, 1))
                break
        else:
            raise bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        if field not in SUPPORTED_FIELDS:
            raise bad_request(f'field label not supported: {field}')
        checks.append((field, value, op == "!="))

    def matches(obj: dict[str, Any]) -> bool:
        for field, value, negate in checks:
            actual = _field_value(obj, field) or ""
            if (actual == value) == negate:
                return False
        return True

    return matches

"""The three patch formats kube-apiserver accepts for built-in types.

Only the server's *result* matters to clients, so each function takes the stored object and the
decoded patch and returns a new object; the stored one is never mutated.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.fake_apiserver.errors import ApiError, bad_request, unsupported_media_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Lists whose Go field carries patchStrategy:"merge" for primitive items, by parent path.
_MERGED_PRIMITIVE_LISTS = {("metadata", "finalizers")}


def unprocessable(message: str) -> ApiError:
    """How the apiserver reports a patch that decodes but cannot be applied (422, no details)."""
    return ApiError(422, "Invalid", message)


def apply_patch(content_type: str, original: dict[str, Any], patch: Any) -> dict[str, Any]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return json_patch(original, patch)
    if media == MERGE_PATCH:
        return dict(merge_patch(original, _require_object(patch)))
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(original, _require_object(patch))
    raise unsupported_media_type(content_type)


def _require_object(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("the patch must be a JSON object for this patch type")
    return patch


# -- RFC 7386 ------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge patch (the subset built-in types need) -------------------------------


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return _smp(target, patch, ())  # type: ignore[no-any-return]


def _smp(target: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    deletions: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            deletions[key.split("/", 1)[1]] = list(value or [])
            continue
        if key.startswith("$"):
            raise bad_request(f"strategic merge patch directive {key!r} is not supported")
        child = (*path, key)
        if value is None:
            result.pop(key, None)
        elif child in _MERGED_PRIMITIVE_LISTS and isinstance(value, list):
            existing = result.get(key) or []
            result[key] = list(value) + [item for item in existing if item not in value]
        else:
            result[key] = _smp(result.get(key), value, child)
    for key, removed in deletions.items():
        if (*path, key) not in _MERGED_PRIMITIVE_LISTS:
            raise bad_request(f"$deleteFromPrimitiveList is not supported for {key!r}")
        result[key] = [item for item in result.get(key) or [] if item not in removed]
    return result


# -- RFC 6902 ------------------------------------------------------------------------------


def json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    document: Any = copy.deepcopy(original)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        document = _apply_operation(document, op)
    if not isinstance(document, dict):
        raise unprocessable("json patch result is not an object")
    return document


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str], path: str) -> Any:
    current = document
    for part in parts[:-1]:
        current = _child(current, part, path)
    return current


def _child(container: Any, part: str, path: str) -> Any:
    if isinstance(container, dict):
        if part not in container:
            raise unprocessable(f"doc is missing path: {path!r}: missing value")
        return container[part]
    if isinstance(container, list):
        return container[_index(container, part, path, allow_end=False)]
    raise unprocessable(f"doc is missing path: {path!r}: missing value")


def _index(container: list[Any], part: str, path: str, allow_end: bool) -> int:
    if allow_end and part == "-":
        return len(container)
    if not part.isdigit() or (part != "0" and part.startswith("0")):
        raise unprocessable(f"invalid array index in {path!r}")
    index = int(part)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise unprocessable(f"array index out of bounds in {path!r}")
    return index


def _get(document: Any, path: str) -> Any:
    current = document
    for part in _pointer(path):
        current = _child(current, part, path)
    return current


def _add(document: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _parent(document, parts, path)
    if isinstance(parent, dict):
        parent[parts[-1]] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, parts[-1], path, allow_end=True), copy.deepcopy(value))
    else:
        raise unprocessable(f"doc is missing path: {path!r}: missing value")
    return document


def _remove(document: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise unprocessable("cannot remove the whole document")
    parent = _parent(document, parts, path)
    if isinstance(parent, dict):
        if parts[-1] not in parent:
            raise unprocessable(f"Unable to remove nonexistent key: {parts[-1]}: missing value")
        del parent[parts[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, parts[-1], path, allow_end=False)]
    else:
        raise unprocessable(f"doc is missing path: {path!r}: missing value")
    return document


def _apply_operation(document: Any, op: dict[str, Any]) -> Any:
    kind, path = op["op"], op["path"]
    if kind == "add":
        return _add(document, path, _value(op))
    if kind == "remove":
        return _remove(document, path)
    if kind == "replace":
        _get(document, path)
        return _add(_remove(document, path), path, _value(op)) if path else _value(op)
    if kind == "move":
        value = _get(document, _from(op))
        return _add(_remove(document, _from(op)), path, value)
    if kind == "copy":
        return _add(document, path, _get(document, _from(op)))
    if kind == "test":
        if _get(document, path) != _value(op):
            raise unprocessable(f"testing value {path} failed: test failed")
        return document
    raise bad_request(f"unexpected json patch operation {kind!r}")


def _value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise bad_request(f"json patch operation {op['op']!r} needs a value")
    return op["value"]


def _from(op: dict[str, Any]) -> str:
    if "from" not in op:
        raise bad_request(f"json patch operation {op['op']!r} needs 'from'")
    return str(op["from"])

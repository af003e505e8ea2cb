"""The verbs (create, get, list, update, patch, delete) over the store, with kube-apiserver's
ordering of checks. Everything here works on plain JSON dicts; HTTP lives in ``app.py``."""

from __future__ import annotations

import copy
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.support.fake_apiserver import errors, kinds
from tests.support.fake_apiserver.patching import apply_patch
from tests.support.fake_apiserver.resources import RESOURCES, Resource
from tests.support.fake_apiserver.selectors import Predicate
from tests.support.fake_apiserver.store import Store

JSON = dict[str, Any]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Metadata only the server may set; a client's copy is replaced by the stored one on update.
_SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                "deletionGracePeriodSeconds")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def typed(resource: Resource, obj: JSON) -> JSON:
    """An object as single-object and watch responses show it: with ``kind``/``apiVersion``."""
    return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}


def canonical(value: Any) -> Any:
    """Drop nulls and empty containers, which Go's omitempty makes indistinguishable."""
    if isinstance(value, dict):
        pruned = {k: canonical(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


class Registry:
    def __init__(self, store: Store, require_namespaces: bool = False) -> None:
        self.store = store
        self.require_namespaces = require_namespaces
        self._allocator = kinds.Allocator()
        self._namespaces = next(r for r in RESOURCES if r.plural == "namespaces")

    # -- reads ------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> JSON:
        obj = self.store.get(resource.key, namespace, name)
        if obj is None:
            raise errors.not_found(resource, name)
        return obj

    def list(self, resource: Resource, namespace: str | None, match: Predicate) -> JSON:
        items = [o for o in self.store.list_objects(resource.key, namespace) if match(o)]
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": items,
        }

    # -- create -----------------------------------------------------------------------------

    def create(self, resource: Resource, namespace: str, body: Any) -> JSON:
        obj = self._decode(resource, namespace, body)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        self._check_name(resource, meta.get("name"))
        self._check_namespace_exists(resource, namespace)
        if self.store.get(resource.key, namespace, meta["name"]) is not None:
            raise errors.already_exists(resource, meta["name"])
        return self._insert(resource, obj)

    def _insert(self, resource: Resource, obj: JSON) -> JSON:
        meta = obj["metadata"]
        for key in (*_SERVER_META, "resourceVersion", "managedFields", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if resource.generation:
            meta["generation"] = 1
        kinds.prepare_create(resource, obj, self._allocator)
        kinds.validate(resource, obj, None)
        return self.store.put(resource.key, obj, "ADDED")

    # -- update and patch -------------------------------------------------------------------

    def update(
        self, resource: Resource, namespace: str, name: str, body: Any, subresource: str | None
    ) -> tuple[JSON, bool]:
        """PUT. Returns the object and whether it was created (201)."""
        obj = self._decode(resource, namespace, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        meta["name"] = name
        stored = self.store.get(resource.key, namespace, name)
        if stored is None:
            if subresource or not resource.create_on_update:
                raise errors.not_found(resource, name)
            self._check_name(resource, name)
            self._check_namespace_exists(resource, namespace)
            return self._insert(resource, obj), True
        if not meta.get("resourceVersion") and not resource.unconditional_update:
            raise errors.invalid(resource, name, [
                ("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")
            ])
        return self._write(resource, stored, obj, subresource), False

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None,
    ) -> JSON:
        stored = self.get(resource, namespace, name)
        patched = apply_patch(content_type, typed(resource, stored), patch)
        if not isinstance(patched.get("metadata"), dict):
            raise errors.bad_request("the patch removed metadata")
        patched["metadata"].setdefault("resourceVersion", stored["metadata"]["resourceVersion"])
        obj = self._decode(resource, namespace, patched)
        if obj["metadata"].get("name") != name:
            raise errors.bad_request("a patch may not change metadata.name")
        return self._write(resource, stored, obj, subresource)

    def _write(self, resource: Resource, stored: JSON, obj: JSON, subresource: str | None) -> JSON:
        """The shared tail of update and patch: isolation, precondition, no-op, finalizers."""
        name = stored["metadata"]["name"]
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != stored["metadata"]["resourceVersion"]:
            raise errors.conflict(resource, name)
        if subresource == "status":
            new = copy.deepcopy(stored)
            new["status"] = obj.get("status", {})
        else:
            new = obj
            for key in _SERVER_META:
                if key in stored["metadata"]:
                    new["metadata"][key] = stored["metadata"][key]
                else:
                    new["metadata"].pop(key, None)
            if resource.status_subresource:
                new.pop("status", None)
                if "status" in stored:
                    new["status"] = copy.deepcopy(stored["status"])
            kinds.prepare_update(resource, new, stored, self._allocator)
        new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        new["metadata"].pop("managedFields", None)
        kinds.validate(resource, new, stored)
        if resource.generation and canonical(new.get("spec")) != canonical(stored.get("spec")):
            new["metadata"]["generation"] = stored["metadata"].get("generation", 0) + 1
        if canonical(new) == canonical(stored):
            return stored
        if stored["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.store.put(resource.key, new, "MODIFIED")
            return self.store.delete(resource.key, stored["metadata"].get("namespace", ""), name)
        return self.store.put(resource.key, new, "MODIFIED")

    # -- delete -----------------------------------------------------------------------------

    def delete(self, resource: Resource, namespace: str, name: str, options: Any) -> JSON:
        """Returns a Status for an immediate delete, the object while finalizers remain."""
        stored = self.get(resource, namespace, name)
        self._check_preconditions(resource, stored, options)
        meta = stored["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return typed(resource, stored)
            marked = copy.deepcopy(stored)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return typed(resource, self.store.put(resource.key, marked, "MODIFIED"))
        if resource is self._namespaces:
            self._delete_namespace_contents(name)
        self.store.delete(resource.key, namespace, name)
        details: JSON = {"name": name, "group": resource.group, "kind": resource.plural,
                         "uid": meta["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    def delete_collection(
        self, resource: Resource, namespace: str | None, match: Predicate, options: Any
    ) -> JSON:
        deleted = []
        for obj in self.store.list_objects(resource.key, namespace):
            if match(obj):
                meta = obj["metadata"]
                result = self.delete(resource, meta.get("namespace", ""), meta["name"], options)
                deleted.append(obj if result.get("kind") == "Status" else result)
        listing = self.list(resource, namespace, lambda _: False)
        listing["items"] = deleted
        return listing

    def _delete_namespace_contents(self, namespace: str) -> None:
        """The namespace controller's job, done at once: the double has no Terminating phase."""
        for key, name in list(self.store.namespaced_keys(namespace)):
            if self.store.get(key, namespace, name) is not None:
                self.store.delete(key, namespace, name)

    def _check_preconditions(self, resource: Resource, stored: JSON, options: Any) -> None:
        preconditions = (options or {}).get("preconditions") or {}
        meta = stored["metadata"]
        uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
        if uid and uid != meta["uid"]:
            raise errors.precondition_conflict(resource, meta["name"], "UID", uid, meta["uid"])
        if rv and rv != meta["resourceVersion"]:
            raise errors.precondition_conflict(
                resource, meta["name"], "ResourceVersion", rv, meta["resourceVersion"]
            )

    # -- helpers ----------------------------------------------------------------------------

    def _decode(self, resource: Resource, namespace: str, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _check_name(self, resource: Resource, name: Any) -> None:
        if not name:
            raise errors.invalid(resource, "", [
                ("metadata.name", "Required value: name or generateName is required")
            ])
        if not isinstance(name, str) or len(name) > 253 or not _NAME.match(name):
            raise errors.invalid(resource, str(name), [
                ("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must "
                                  "consist of lower case alphanumeric characters, '-' or '.'")
            ])

    def _check_namespace_exists(self, resource: Resource, namespace: str) -> None:
        if not resource.namespaced or not self.require_namespaces:
            return
        if self.store.get(self._namespaces.key, "", namespace) is None:
            raise errors.not_found(self._namespaces, namespace)

    # -- test hooks -------------------------------------------------------------------------

    def seed(self, resource: Resource, obj: JSON) -> JSON:
        """Store an object as given, status and creationTimestamp included, skipping the checks
        a client would face (namespace from the body, default ``default``)."""
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace") or "default" if resource.namespaced else ""
        meta.pop("namespace", None)
        decoded = self._decode(resource, namespace, body)
        meta = decoded["metadata"]
        existing = self.store.get(resource.key, namespace, meta["name"])
        status = decoded.get("status")
        given = {k: meta[k] for k in ("uid", "creationTimestamp", "generation") if k in meta}
        if existing is None:
            kinds.prepare_create(resource, decoded, self._allocator)
        else:
            kinds.prepare_update(resource, decoded, existing, self._allocator)
            given = {k: existing["metadata"][k] for k in ("uid", "creationTimestamp", "generation")
                     if k in existing["metadata"]} | given
        if status is not None:
            decoded["status"] = status
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta.update(given)
        if resource.generation:
            meta.setdefault("generation", 1)
        meta.pop("resourceVersion", None)
        return self.store.put(resource.key, decoded, "MODIFIED" if existing else "ADDED")

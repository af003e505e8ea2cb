"""An immutable view of every object the sources know about."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

KubeObject = Mapping[str, Any]
"""A Kubernetes object as the API serves it (parsed JSON or YAML)."""

KINDS = (
    "Ingress",
    "IngressClass",
    "Service",
    "EndpointSlice",
    "Endpoints",
    "Secret",
    "ConfigMap",
)
"""The kinds pyingress reads; anything else in a manifest is ignored."""

CLUSTER_SCOPED = frozenset({"IngressClass"})


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """Names one object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def namespaced_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def ref_of(obj: KubeObject, kind: str | None = None) -> ObjectRef:
    """The reference of ``obj``; ``kind`` overrides a missing ``kind`` field (list items)."""
    meta = obj.get("metadata") or {}
    the_kind = kind or str(obj.get("kind", ""))
    namespace = "" if the_kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return ObjectRef(the_kind, namespace, str(meta.get("name", "")))


class Snapshot:
    """A consistent, read-only set of objects, indexed by kind and by reference.

    The compiler only ever sees a snapshot, so it never observes a half-applied change.
    """

    __slots__ = ("_by_kind", "_by_ref")

    def __init__(self, objects: Mapping[ObjectRef, KubeObject] | None = None) -> None:
        self._by_ref: dict[ObjectRef, KubeObject] = dict(objects or {})
        by_kind: dict[str, list[KubeObject]] = {}
        for ref in sorted(self._by_ref):
            by_kind.setdefault(ref.kind, []).append(self._by_ref[ref])
        self._by_kind = by_kind

    @classmethod
    def of(cls, objects: Iterable[KubeObject]) -> Snapshot:
        """Build a snapshot from objects that carry their own ``kind``."""
        return cls({ref_of(obj): obj for obj in objects})

    def of_kind(self, kind: str) -> list[KubeObject]:
        """Every object of ``kind``, ordered by namespace and name."""
        return self._by_kind.get(kind, [])

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self._by_ref.get(ObjectRef(kind, namespace, name))

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._by_ref)

    def __len__(self) -> int:
        return len(self._by_ref)

"""The one place sources put objects; the reconciler reads consistent snapshots from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pyingress.model import KubeObject, ObjectRef, Snapshot, ref_of

Listener = Callable[[], None]


class ObjectStore:
    """Current objects by reference, with change notification.

    Sources call :meth:`update` with batches (one file, one watch event, one re-list), so a
    snapshot never shows half of a batch. Listeners are called synchronously after each
    change; they should only schedule work (set an event), never compile inline.
    """

    def __init__(self) -> None:
        self._objects: dict[ObjectRef, KubeObject] = {}
        self._listeners: list[Listener] = []
        self.version = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update(self, upserts: Iterable[KubeObject] = (), deletes: Iterable[ObjectRef] = ()) -> bool:
        """Apply a batch; returns whether anything changed (listeners run only then)."""
        changed = False
        for ref in deletes:
            if self._objects.pop(ref, None) is not None:
                changed = True
        for obj in upserts:
            ref = ref_of(obj)
            if self._objects.get(ref) != obj:
                self._objects[ref] = obj
                changed = True
        if changed:
            self.version += 1
            for listener in self._listeners:
                listener()
        return changed

    def refs(self, kind: str | None = None) -> set[ObjectRef]:
        return {ref for ref in self._objects if kind is None or ref.kind == kind}

    def get(self, ref: ObjectRef) -> KubeObject | None:
        return self._objects.get(ref)

    def snapshot(self) -> Snapshot:
        return Snapshot(self._objects)

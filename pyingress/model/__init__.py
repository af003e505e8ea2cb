"""Typed views of the Kubernetes objects pyingress reads.

Sources hand the rest of the program plain Kubernetes JSON (``dict``); this package names
those objects (:class:`ObjectRef`), freezes a consistent view of them (:class:`Snapshot`) and
describes what can be wrong with one (:class:`Problem`).
"""

from pyingress.model.problems import Problem, Severity
from pyingress.model.snapshot import KINDS, KubeObject, ObjectRef, Snapshot, ref_of

__all__ = ["KINDS", "KubeObject", "ObjectRef", "Problem", "Severity", "Snapshot", "ref_of"]

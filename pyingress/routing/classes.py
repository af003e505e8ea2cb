"""Which Ingresses this controller serves, by IngressClass (the ingress-nginx order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyingress.model import KubeObject

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


class ClassOptions(Protocol):
    @property
    def ingress_class(self) -> str: ...
    @property
    def controller_name(self) -> str: ...
    @property
    def watch_ingress_without_class(self) -> bool: ...


def our_classes(ingress_classes: Sequence[KubeObject], options: ClassOptions) -> dict[str, bool]:
    """Names of the IngressClasses whose controller is ours, mapped to "is the default class"."""
    ours = {}
    for ingress_class in ingress_classes:
        if (ingress_class.get("spec") or {}).get("controller") != options.controller_name:
            continue
        meta = ingress_class.get("metadata") or {}
        is_default = str((meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION, "")).lower()
        ours[str(meta.get("name", ""))] = is_default == "true"
    return ours


def owns_ingress(ingress: KubeObject, classes: dict[str, bool], options: ClassOptions) -> bool:
    """Whether ``ingress`` is ours, given :func:`our_classes`.

    1. ``spec.ingressClassName`` must name an existing IngressClass whose controller is ours
       (a class that does not exist is never served);
    2. else the legacy ``kubernetes.io/ingress.class`` annotation must equal our class name;
    3. else a class-less Ingress is ours when one of our IngressClasses is the cluster default or
       ``--watch-ingress-without-class`` is set.
    """
    class_name = (ingress.get("spec") or {}).get("ingressClassName")
    if class_name:
        return class_name in classes
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    legacy = annotations.get(LEGACY_CLASS_ANNOTATION)
    if legacy:
        return bool(legacy == options.ingress_class)
    return options.watch_ingress_without_class or any(classes.values())

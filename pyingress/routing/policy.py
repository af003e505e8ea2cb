"""Per-route behaviour parsed from annotations into one typed, frozen :class:`RoutePolicy`.

Each concern keeps its own pure policy type and parser beside its code (``pyingress/tls/policy.py``,
``pyingress/auth/policy.py``, ``pyingress/traffic/policy.py``) and adds one field here and one
line to :func:`parse_policy`. The run-time side of a policy is a filter
(:mod:`pyingress.policy`) or, for upstream choices, read by the proxy directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyingress.auth.policy import AuthPolicy, parse_auth
from pyingress.model import Problem, Snapshot
from pyingress.model.snapshot import ObjectRef
from pyingress.routing.annotations import Annotations
from pyingress.tls.policy import TLSPolicy, tls_policy
from pyingress.traffic.policy import TrafficPolicy, parse_traffic


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy parser may look at besides the annotations: the Ingress and the objects.

    Parsers that read a referenced object (an htpasswd Secret, a headers ConfigMap) report a
    missing or bad one in ``problems``; raising AnnotationError skips the whole Ingress.
    """

    ingress: ObjectRef
    snapshot: Snapshot
    problems: list[Problem]


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything about a route beyond host, path and backend; defaults mean plain proxying."""

    tls: TLSPolicy | None = None
    traffic: TrafficPolicy | None = None
    auth: AuthPolicy | None = None


DEFAULT_POLICY = RoutePolicy()


def parse_policy(annotations: Annotations, context: PolicyContext) -> RoutePolicy:
    """The policy an Ingress's annotations ask for; raises AnnotationError on a bad value."""
    policy = RoutePolicy(
        tls=tls_policy(annotations, context),
        traffic=parse_traffic(annotations, context),
        auth=parse_auth(annotations, context),
    )
    return DEFAULT_POLICY if policy == DEFAULT_POLICY else policy

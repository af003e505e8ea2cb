"""Which pool address each LoadBalancer Service gets: a pure function, tested without I/O.

Rules (MetalLB's, where it has one):

- A Service is ours when ``spec.type`` is LoadBalancer and ``spec.loadBalancerClass`` is
  ``pyingress.io/announcer``, or absent (unless class-less Services are ignored).
- Requested addresses come from ``metallb.io/loadBalancerIPs``, ``pyingress.io/load-balancer-ips``
  (comma-separated) or ``spec.loadBalancerIP``; they must lie in the pool, and a Service gets all
  of them or none.
- Two Services share an address only if both carry the same ``metallb.io/allow-shared-ip`` key
  and no port (protocol + number) is used by both.
- Stability first: an address a Service already holds (its status) is kept while still valid,
  oldest Service first; then requests are honoured; then new Services get the lowest free (or
  shareable) address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyingress.announce.pool import Pool
from pyingress.model import ObjectRef, Problem

IPv4 = ipaddress.IPv4Address

LB_CLASS = "pyingress.io/announcer"
SHARING_ANNOTATION = "metallb.io/allow-shared-ip"
REQUEST_ANNOTATIONS = ("metallb.io/loadBalancerIPs", "pyingress.io/load-balancer-ips")


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What allocation needs to know about one Service."""

    ref: ObjectRef
    ours: bool
    created: str = ""
    requested: tuple[IPv4, ...] = ()
    sharing_key: str = ""
    ports: frozenset[tuple[str, int]] = frozenset()
    current: tuple[IPv4, ...] = ()
    local_traffic: bool = False
    invalid: str = ""
    """Why the Service's own request cannot be read; such a Service gets nothing."""


@dataclass
class Allocation:
    assignments: dict[ObjectRef, tuple[IPv4, ...]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def users(self) -> dict[IPv4, list[ObjectRef]]:
        out: dict[IPv4, list[ObjectRef]] = {}
        for ref, ips in sorted(self.assignments.items()):
            for ip in ips:
                out.setdefault(ip, []).append(ref)
        return out


def view_of(service: Mapping[str, Any], ignore_classless: bool = False) -> ServiceView:
    """Read a Service object (Kubernetes JSON) into a :class:`ServiceView`."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    annotations = meta.get("annotations") or {}
    ref = ObjectRef("Service", str(meta.get("namespace") or "default"), str(meta.get("name", "")))
    lb_class = spec.get("loadBalancerClass")
    ours = spec.get("type") == "LoadBalancer" and (
        lb_class == LB_CLASS or (lb_class is None and not ignore_classless)
    )
    ports = frozenset(
        (str(p.get("protocol") or "TCP"), int(p.get("port", 0))) for p in spec.get("ports") or []
    )
    current = tuple(_status_ips(service))
    requested, invalid = _requested(spec, annotations)
    return ServiceView(
        ref=ref,
        ours=ours,
        created=str(meta.get("creationTimestamp") or ""),
        requested=requested,
        sharing_key=str(annotations.get(SHARING_ANNOTATION) or ""),
        ports=ports,
        current=current,
        local_traffic=spec.get("externalTrafficPolicy") == "Local",
        invalid=invalid,
    )


def _status_ips(service: Mapping[str, Any]) -> list[IPv4]:
    entries = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    out = []
    for entry in entries:
        try:
            out.append(IPv4(str(entry.get("ip", ""))))
        except ValueError:
            continue
    return out


def _requested(
    spec: Mapping[str, Any], annotations: Mapping[str, Any]
) -> tuple[tuple[IPv4, ...], str]:
    texts: list[str] = []
    for key in REQUEST_ANNOTATIONS:
        if annotations.get(key):
            texts = [t.strip() for t in str(annotations[key]).split(",") if t.strip()]
            break
    if not texts and spec.get("loadBalancerIP"):
        texts = [str(spec["loadBalancerIP"]).strip()]
    ips: list[IPv4] = []
    for text in texts:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return (), f"requested address {text!r} is not an IP address"
        if not isinstance(ip, IPv4):
            return (), f"requested address {text} is IPv6; the announcer serves IPv4 only"
        if ip not in ips:
            ips.append(ip)
    return tuple(ips), ""


class _Book:
    """Addresses taken so far, with who holds them."""

    def __init__(self) -> None:
        self.users: dict[IPv4, list[ServiceView]] = {}

    def blocker(self, ip: IPv4, svc: ServiceView) -> ServiceView | None:
        """The first holder that keeps ``svc`` off ``ip``, or None if ``svc`` may use it."""
        for other in self.users.get(ip, ()):
            if not svc.sharing_key or svc.sharing_key != other.sharing_key:
                return other
            if svc.ports & other.ports:
                return other
        return None

    def fits(self, ips: Iterable[IPv4], svc: ServiceView) -> bool:
        return all(self.blocker(ip, svc) is None for ip in ips)

    def take(self, ips: Iterable[IPv4], svc: ServiceView) -> None:
        for ip in ips:
            self.users.setdefault(ip, []).append(svc)


def allocate(services: Iterable[ServiceView], pool: Pool) -> Allocation:
    """Assign pool addresses to the Services that are ours; report those that cannot have one."""
    ours = sorted((s for s in services if s.ours), key=lambda s: (s.created, s.ref))
    book = _Book()
    result = Allocation()
    pending: list[ServiceView] = []
    for svc in ours:  # 1. keep what is already held and still valid
        if svc.invalid:
            result.problems.append(Problem(svc.ref, "InvalidLoadBalancerIP", svc.invalid))
            continue
        keep = svc.current and all(ip in pool for ip in svc.current)
        if keep and svc.requested and set(svc.current) != set(svc.requested):
            keep = False
        if keep and book.fits(svc.current, svc):
            book.take(svc.current, svc)
            result.assignments[svc.ref] = svc.current
        else:
            pending.append(svc)
    dynamic: list[ServiceView] = []
    for svc in pending:  # 2. honour explicit requests
        if not svc.requested:
            dynamic.append(svc)
            continue
        outside = [ip for ip in svc.requested if ip not in pool]
        if outside:
            message = f"requested address {outside[0]} is not in the announcer's pool"
            result.problems.append(Problem(svc.ref, "LoadBalancerIPNotInPool", message))
            continue
        held = next((b for ip in svc.requested if (b := book.blocker(ip, svc)) is not None), None)
        if held is not None:
            message = (
                f"requested address is in use by {held.ref.namespaced_name} "
                f"(sharing needs the same {SHARING_ANNOTATION} key and distinct ports)"
            )
            result.problems.append(Problem(svc.ref, "LoadBalancerIPInUse", message))
            continue
        book.take(svc.requested, svc)
        result.assignments[svc.ref] = svc.requested
    for svc in dynamic:  # 3. lowest address that is free or shareable
        ip = next((ip for ip in pool if book.blocker(ip, svc) is None), None)
        if ip is None:
            message = "no free address left in the announcer's pool"
            result.problems.append(Problem(svc.ref, "PoolExhausted", message))
            continue
        book.take((ip,), svc)
        result.assignments[svc.ref] = (ip,)
    return result

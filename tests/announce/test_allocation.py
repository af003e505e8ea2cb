"""Allocation as a pure function: Services + pool in, assignments + problems out."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from pyingress.announce.allocation import allocate, view_of
from pyingress.announce.pool import Pool, PoolError
from pyingress.model import ObjectRef

POOL = Pool.parse(["10.0.0.10-10.0.0.12"])


def svc(name: str, *, created: str = "2026-01-01T00:00:00Z", ports: tuple[int, ...] = (80,),
        annotations: dict[str, str] | None = None, status: list[str] | None = None,
        **spec: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                     "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": p, "protocol": "TCP"} for p in ports],
                 **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in status or []]}},
    }  # fmt: skip


def run(*services: dict[str, Any], pool: Pool = POOL, ignore_classless: bool = False
        ) -> tuple[dict[str, list[str]], dict[str, str]]:  # fmt: skip
    result = allocate([view_of(s, ignore_classless) for s in services], pool)
    ips = {ref.name: [str(ip) for ip in v] for ref, v in result.assignments.items()}
    problems = {p.ref.name: p.reason for p in result.problems}
    return ips, problems


def ref(name: str) -> ObjectRef:
    return ObjectRef("Service", "default", name)


def test_lowest_free_address_in_creation_order() -> None:
    ips, problems = run(
        svc("b", created="2026-01-02T00:00:00Z"), svc("a", created="2026-01-01T00:00:00Z")
    )
    assert ips == {"a": ["10.0.0.10"], "b": ["10.0.0.11"]} and not problems


def test_class_selection() -> None:
    ours = svc("ours", loadBalancerClass="pyingress.io/announcer")
    other = svc("other", loadBalancerClass="example.com/lb")
    classless = svc("classless")
    not_lb = svc("plain", type="ClusterIP")
    ips, _ = run(ours, other, classless, not_lb)
    assert set(ips) == {"ours", "classless"}
    ips, _ = run(ours, other, classless, not_lb, ignore_classless=True)
    assert set(ips) == {"ours"}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("annotation", {"metallb.io/loadBalancerIPs": "10.0.0.12"}),
        ("annotation", {"pyingress.io/load-balancer-ips": "10.0.0.12"}),
        ("spec", {"loadBalancerIP": "10.0.0.12"}),
    ],
)
def test_requested_address_is_honoured(where: str, value: dict[str, str]) -> None:
    service = svc("a", annotations=value) if where == "annotation" else svc("a", **value)
    ips, problems = run(service)
    assert ips == {"a": ["10.0.0.12"]} and not problems


def test_requested_address_outside_pool_or_invalid_is_a_problem() -> None:
    ips, problems = run(
        svc("out", loadBalancerIP="192.168.1.1"),
        svc("bad", annotations={"metallb.io/loadBalancerIPs": "not-an-ip"}),
        svc("v6", annotations={"metallb.io/loadBalancerIPs": "fd00::1"}),
    )
    assert ips == {}
    assert problems == {
        "out": "LoadBalancerIPNotInPool", "bad": "InvalidLoadBalancerIP",
        "v6": "InvalidLoadBalancerIP",
    }  # fmt: skip


def test_requested_address_held_by_another_service_is_refused() -> None:
    ips, problems = run(
        svc("holder", status=["10.0.0.10"]), svc("late", loadBalancerIP="10.0.0.10")
    )
    assert ips == {"holder": ["10.0.0.10"]} and problems == {"late": "LoadBalancerIPInUse"}


def test_sharing_needs_same_key_and_distinct_ports() -> None:
    key = {"metallb.io/allow-shared-ip": "k"}
    ips, problems = run(
        svc("dns-tcp", annotations=key, ports=(53,), created="2026-01-01T00:00:01Z"),
        svc("web", annotations=key, ports=(80,), created="2026-01-01T00:00:02Z"),
        svc("clash", annotations=key, ports=(80,), created="2026-01-01T00:00:03Z"),
        svc("nokey", ports=(443,), created="2026-01-01T00:00:04Z"),
    )
    assert ips == {
        "dns-tcp": ["10.0.0.10"], "web": ["10.0.0.10"], "clash": ["10.0.0.11"],
        "nokey": ["10.0.0.12"],
    }  # fmt: skip
    assert not problems


def test_sharing_with_requested_address() -> None:
    ips, problems = run(
        svc("a", ports=(80,), annotations={"metallb.io/allow-shared-ip": "k",
                                           "metallb.io/loadBalancerIPs": "10.0.0.11"}),
        svc("b", ports=(443,), annotations={"metallb.io/allow-shared-ip": "k",
                                            "metallb.io/loadBalancerIPs": "10.0.0.11"}),
        svc("c", ports=(22,), annotations={"metallb.io/allow-shared-ip": "other",
                                           "metallb.io/loadBalancerIPs": "10.0.0.11"}),
    )  # fmt: skip
    assert ips == {"a": ["10.0.0.11"], "b": ["10.0.0.11"]}
    assert problems == {"c": "LoadBalancerIPInUse"}


def test_current_address_is_kept_over_creation_order() -> None:
    ips, _ = run(svc("old", created="2026-01-01T00:00:00Z"),
                 svc("new", created="2026-02-01T00:00:00Z", status=["10.0.0.10"]))  # fmt: skip
    assert ips == {"new": ["10.0.0.10"], "old": ["10.0.0.11"]}


def test_pool_change_moves_addresses_outside_it() -> None:
    new_pool = Pool.parse(["10.0.0.20/30"])  # .21 and .22
    ips, problems = run(svc("a", status=["10.0.0.10"]), svc("b", status=["10.0.0.11"]),
                        pool=new_pool)  # fmt: skip
    assert ips == {"a": ["10.0.0.21"], "b": ["10.0.0.22"]} and not problems


def test_exhausted_pool_reports_the_rest() -> None:
    services = [svc(f"s{i}", created=f"2026-01-01T00:00:0{i}Z") for i in range(5)]
    ips, problems = run(*services)
    assert len(ips) == 3 and problems == {"s3": "PoolExhausted", "s4": "PoolExhausted"}


def test_changed_request_moves_the_service() -> None:
    ips, _ = run(svc("a", status=["10.0.0.10"], loadBalancerIP="10.0.0.12"))
    assert ips == {"a": ["10.0.0.12"]}


def test_no_address_is_ever_given_twice_without_sharing() -> None:
    """Every order of the same Services gives a valid assignment (no unshareable duplicates)."""
    services = [
        svc("a", status=["10.0.0.11"]), svc("b", loadBalancerIP="10.0.0.11"),
        svc("c"), svc("d", annotations={"metallb.io/allow-shared-ip": "k"}),
        svc("e", annotations={"metallb.io/allow-shared-ip": "k"}, ports=(81,)),
    ]  # fmt: skip
    outcomes = set()
    for order in itertools.permutations(services):
        result = allocate([view_of(s) for s in order], POOL)
        for ip, refs in result.users().items():
            assert len(refs) == 1 or {r.name for r in refs} <= {"d", "e"}, (ip, refs)
        outcomes.add(tuple(sorted((r.name, v) for r, v in result.assignments.items())))
    assert len(outcomes) == 1, "the result does not depend on the order Services are listed"


def test_pool_parsing() -> None:
    assert [str(ip) for ip in Pool.parse(["10.0.0.0/30"])] == ["10.0.0.1", "10.0.0.2"]
    assert len(Pool.parse(["10.0.0.10-10.0.0.20", "10.0.1.0/31"])) == 13
    assert ipaddress.IPv4Address("10.0.0.15") in Pool.parse(["10.0.0.10-10.0.0.20"])
    for bad in (["10.0.0.5-10.0.0.1"], ["10.0.0.1/24"], ["nonsense"], [],
                ["10.0.0.0/30", "10.0.0.2-10.0.0.9"]):  # fmt: skip
        with pytest.raises(PoolError):
            Pool.parse(bad)

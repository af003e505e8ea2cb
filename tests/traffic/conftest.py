"""Helpers for traffic tests: compile manifests with annotations into a table."""

from __future__ import annotations

from typing import Any

import pytest

import pyingress.traffic.filters  # noqa: F401 - registers the traffic filters
from pyingress.model import Snapshot
from pyingress.routing.compiler import CompileResult, compile_routes
from tests.support import manifests as m

NGINX = "nginx.ingress.kubernetes.io/"


def nginx(**values: str) -> dict[str, str]:
    """``nginx.ingress.kubernetes.io/`` annotations from keyword arguments (``_`` -> ``-``)."""
    return {NGINX + key.replace("_", "-"): value for key, value in values.items()}


def services(*names: str, addresses: int = 2, base_port: int = 8000) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        objects.append(m.service(name, [{"name": "http", "port": 80, "targetPort": 8080}]))
        objects[-1]["spec"]["clusterIP"] = f"10.96.0.{index + 10}"
        ips = [f"10.0.{index}.{n + 1}" for n in range(addresses)]
        objects.append(m.endpoint_slice(name, ips, base_port + index))
    return objects


def compile_objects(*objects: dict[str, Any]) -> CompileResult:
    return compile_routes(Snapshot.of([m.ingress_class(), *objects]))


@pytest.fixture
def compile_with() -> Any:
    return compile_objects

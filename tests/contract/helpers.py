"""Object builders and assertions shared by the contract tests."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable
from typing import Any

import pytest
from kubernetes_asyncio import client

JSON = dict[str, Any]
RFC3339_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def expect_api_error(awaitable: Awaitable[Any], status: int) -> JSON:
    """Await a client call that must fail with ``status``; return its Status body."""
    with pytest.raises(client.ApiException) as caught:
        await awaitable
    assert caught.value.status == status, caught.value.body
    body: JSON = json.loads(caught.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["code"] == status, body
    return body


def ingress(name: str, labels: dict[str, str] | None = None, host: str = "a.example.com",
            **metadata: Any) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "labels": labels or {}, **metadata},
        "spec": {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}},
        }]}}]},
    }


def service(name: str, **spec: Any) -> JSON:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80}], **spec}}


def lease(name: str, holder: str = "a", rv: str | None = None) -> JSON:
    metadata: JSON = {"name": name}
    if rv is not None:
        metadata["resourceVersion"] = rv
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}}


def rv(obj: Any) -> int:
    """An RV as a number. Clients must treat RVs as opaque; the contract checks ordering."""
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    value = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    return int(value)

"""Resolve an Ingress backend (Service name + port) to ready endpoints.

Endpoints come from EndpointSlices (``discovery.k8s.io/v1``), or from legacy Endpoints objects when
a Service has no slices. Requests go to the pods, never the ClusterIP, so balancing is per request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pyingress.model import KubeObject, Snapshot
from pyingress.routing.table import Backend, Endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class BackendError(ValueError):
    """The backend cannot be resolved; ``reason`` is the problem's CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BackendResolver:
    """Indexes Services and endpoint objects of one snapshot; resolves and caches backends."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._slices: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
        for endpoint_slice in snapshot.of_kind("EndpointSlice"):
            meta = endpoint_slice.get("metadata") or {}
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service:
                self._slices[(meta.get("namespace") or "default", service)].append(endpoint_slice)
        self._cache: dict[tuple[str, str, str], Backend] = {}

    def resolve(self, namespace: str, service_name: str, port: Mapping[str, Any]) -> Backend:
        """The backend for ``service_name`` and a ``{"number": N}`` or ``{"name": S}`` port."""
        port_key = str(port.get("number") or port.get("name") or "")
        key = (namespace, service_name, port_key)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._resolve(namespace, service_name, port)
        return cached

    def _resolve(self, namespace: str, name: str, port: Mapping[str, Any]) -> Backend:
        service = self._snapshot.get("Service", namespace, name)
        label = f"{namespace}/{name}:{port.get('number') or port.get('name')}"
        if service is None:
            raise BackendError("ServiceNotFound", f"Service {namespace}/{name} does not exist")
        spec = service.get("spec") or {}
        service_port = _find_service_port(spec.get("ports") or [], port, f"{namespace}/{name}")
        if spec.get("type") == "ExternalName":
            external = str(spec.get("externalName") or "")
            if not external:
                raise BackendError(
                    "InvalidService", f"Service {namespace}/{name} has no externalName"
                )
            number = int(service_port.get("port") or port.get("number") or 0)
            return Backend(label, (Endpoint(external, number),))
        slices = self._slices.get((namespace, name))
        if slices:
            endpoints = _from_slices(slices, service_port)
        else:
            endpoints = _from_endpoints(
                self._snapshot.get("Endpoints", namespace, name), service_port
            )
        unavailable = "" if endpoints else f"no ready endpoints for service {namespace}/{name}"
        return Backend(label, endpoints, unavailable)


def _find_service_port(
    ports: Iterable[Mapping[str, Any]], wanted: Mapping[str, Any], service: str
) -> Mapping[str, Any]:
    number, name = wanted.get("number"), wanted.get("name")
    for candidate in ports:
        if (number and candidate.get("port") == number) or (name and candidate.get("name") == name):
            return candidate
    shown = number if number else repr(name)
    raise BackendError("ServicePortNotFound", f"Service {service} has no port {shown}")


def _from_slices(slices: list[KubeObject], service_port: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    port_name = service_port.get("name") or ""
    found: dict[Endpoint, None] = {}
    for endpoint_slice in slices:
        number = _slice_port(endpoint_slice.get("ports") or [], port_name, service_port)
        if number is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                found[Endpoint(str(address), number)] = None
    return tuple(found)


def _slice_port(
    ports: list[Mapping[str, Any]], port_name: str, service_port: Mapping[str, Any]
) -> int | None:
    for candidate in ports:
        if (candidate.get("name") or "") == port_name and candidate.get("port"):
            return int(candidate["port"])
    if not ports:
        target = service_port.get("targetPort", service_port.get("port"))
        return target if isinstance(target, int) else None
    return None


def _from_endpoints(
    endpoints: KubeObject | None, service_port: Mapping[str, Any]
) -> tuple[Endpoint, ...]:
    if endpoints is None:
        return ()
    port_name = service_port.get("name") or ""
    found: dict[Endpoint, None] = {}
    for subset in endpoints.get("subsets") or []:
        number = _slice_port(subset.get("ports") or [], port_name, service_port)
        if number is None:
            continue
        for address in subset.get("addresses") or []:
            if address.get("ip"):
                found[Endpoint(str(address["ip"]), number)] = None
    return tuple(found)

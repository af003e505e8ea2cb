"""Per-type defaulting and validation: the parts of each registry strategy clients can observe."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from tests.support.fake_apiserver.errors import invalid
from tests.support.fake_apiserver.resources import Resource

JSON = dict[str, Any]
Causes = list[tuple[str, str]]


class Allocator:
    """Hands out Service cluster IPs from 10.96.0.0/16 and node ports from 30000-32767.

    They are only data: nothing ever sends traffic to them.
    """

    def __init__(self) -> None:
        self._ips = (f"10.96.{n // 254}.{n % 254 + 1}" for n in itertools.count(1))
        self._ports = itertools.cycle(range(30000, 32768))

    def cluster_ip(self) -> str:
        return next(self._ips)

    def node_port(self) -> int:
        return next(self._ports)


def prepare_create(resource: Resource, obj: JSON, allocator: Allocator) -> None:
    kind = resource.kind
    if resource.status_subresource and kind != "Namespace":
        obj["status"] = {"loadBalancer": {}} if kind in ("Ingress", "Service") else {}
    if kind == "Service":
        _service_defaults(obj, allocator, previous=None)
    elif kind == "Secret":
        _secret_defaults(obj)
    elif kind == "Namespace":
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}


def prepare_update(resource: Resource, obj: JSON, previous: JSON, allocator: Allocator) -> None:
    if resource.kind == "Service":
        _service_defaults(obj, allocator, previous)
    elif resource.kind == "Secret":
        _secret_defaults(obj)
    elif resource.kind == "Namespace":
        obj["spec"] = previous.get("spec", {})


def validate(resource: Resource, obj: JSON, previous: JSON | None) -> None:
    causes: Causes = []
    validator = _VALIDATORS.get(resource.kind)
    if validator is not None:
        validator(obj, previous, causes)
    if causes:
        raise invalid(resource, obj["metadata"].get("name", ""), causes)


def _service_defaults(obj: JSON, allocator: Allocator, previous: JSON | None) -> None:
    spec = obj.setdefault("spec", {})
    old_spec = (previous or {}).get("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        # v1.20 keeps allocated values when an update leaves them out (patchAllocatedValues).
        cluster_ip = spec.get("clusterIP") or old_spec.get("clusterIP") or allocator.cluster_ip()
        spec["clusterIP"] = cluster_ip
        if cluster_ip != "None":
            spec["clusterIPs"] = [cluster_ip]
    old_ports = {p.get("port"): p for p in old_spec.get("ports", [])}
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            port["nodePort"] = old_ports.get(port.get("port"), {}).get("nodePort") or (
                allocator.node_port()
            )


def _secret_defaults(obj: JSON) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _validate_secret(obj: JSON, previous: JSON | None, causes: Causes) -> None:
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except ValueError:
            causes.append((f"data[{key}]", "Invalid value: illegal base64 data"))
    if obj.get("type") == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                causes.append((f"data[{key}]", "Required value"))
    if previous is not None and previous.get("type") != obj.get("type"):
        causes.append(("type", "Invalid value: field is immutable"))


def _validate_lease(obj: JSON, previous: JSON | None, causes: Causes) -> None:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(("spec.leaseDurationSeconds",
                       f"Invalid value: {duration}: must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(("spec.leaseTransitions",
                       f"Invalid value: {transitions}: must be greater than or equal to 0"))


def _validate_ingress_class(obj: JSON, previous: JSON | None, causes: Causes) -> None:
    controller = (obj.get("spec") or {}).get("controller")
    if not controller:
        causes.append(("spec.controller", "Required value"))
    elif previous is not None and controller != (previous.get("spec") or {}).get("controller"):
        causes.append(("spec.controller", "Invalid value: field is immutable"))


def _validate_endpoint_slice(obj: JSON, previous: JSON | None, causes: Causes) -> None:
    if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
        causes.append(("addressType", "Unsupported value: supported values: IPv4, IPv6, FQDN"))
    elif previous is not None and obj["addressType"] != previous.get("addressType"):
        causes.append(("addressType", "Invalid value: field is immutable"))


def _validate_service(obj: JSON, previous: JSON | None, causes: Causes) -> None:
    spec = obj.get("spec") or {}
    if spec.get("type") != "ExternalName" and not spec.get("ports") and (
        spec.get("clusterIP") != "None"
    ):
        causes.append(("spec.ports", "Required value"))
    old_ip = ((previous or {}).get("spec") or {}).get("clusterIP")
    if previous is not None and old_ip and spec.get("clusterIP") != old_ip:
        causes.append(("spec.clusterIP", "Invalid value: field is immutable"))


_VALIDATORS = {
    "Secret": _validate_secret,
    "Lease": _validate_lease,
    "IngressClass": _validate_ingress_class,
    "EndpointSlice": _validate_endpoint_slice,
    "Service": _validate_service,
}

"""Build Kubernetes objects for tests, as plain dicts, and write them as manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


def ingress(
    name: str,
    rules: list[Obj] | None = None,
    *,
    namespace: str = "default",
    class_name: str | None = "pyingress",
    default_backend: Obj | None = None,
    tls: list[Obj] | None = None,
    annotations: dict[str, str] | None = None,
    created: str | None = None,
) -> Obj:
    spec: Obj = {}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if rules is not None:
        spec["rules"] = rules
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    if tls is not None:
        spec["tls"] = tls
    meta: Obj = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def backend(service: str, port: int | str = 80) -> Obj:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(
    path: str | None, service: str, path_type: str | None = "Prefix", port: int | str = 80
) -> Obj:
    item: Obj = {"backend": backend(service, port)}
    if path is not None:
        item["path"] = path
    if path_type is not None:
        item["pathType"] = path_type
    return item


def rule(host: str | None, *paths: Obj) -> Obj:
    result: Obj = {"http": {"paths": list(paths)}}
    if host is not None:
        result["host"] = host
    return result


def ingress_class(
    name: str = "pyingress",
    controller: str = "pyingress.io/ingress-controller",
    default: bool = False,
) -> Obj:
    meta: Obj = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": controller},
    }


def service(
    name: str,
    ports: list[Obj] | None = None,
    *,
    namespace: str = "default",
    external_name: str | None = None,
) -> Obj:
    spec: Obj = {
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}]
    }
    if external_name:
        spec["type"] = "ExternalName"
        spec["externalName"] = external_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def endpoint_slice(
    service_name: str,
    addresses: list[str],
    port: int,
    *,
    port_name: str = "http",
    namespace: str = "default",
    not_ready: tuple[str, ...] = (),
    name: str | None = None,
) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address], "conditions": {"ready": address not in not_ready}}
            for address in addresses
        ],
    }


def secret_tls(name: str, cert_pem: bytes, key_pem: bytes, *, namespace: str = "default") -> Obj:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }


def write_manifests(path: Path, *objects: Obj) -> Path:
    """Write ``objects`` as one multi-document YAML file (atomically, by rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    tmp.replace(path)
    return path

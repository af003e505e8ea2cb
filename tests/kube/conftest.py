"""Fixtures for the cluster-mode suite: the API double, a client for it, and object builders."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyingress.sources.kubeclient import KubeApi
from tests.support.apiserver_fixtures import (  # noqa: F401
    configuration,
    fake_apiserver,
    kubeconfig,
)
from tests.support.fake_apiserver import FakeApiServer

JSON = dict[str, Any]


@pytest.fixture
async def kube_api(fake_apiserver: FakeApiServer) -> AsyncIterator[KubeApi]:  # noqa: F811
    from kubernetes_asyncio import client

    api = KubeApi(client.ApiClient(configuration(fake_apiserver.url)))
    try:
        yield api
    finally:
        await api.close()


def ingress_class(
    name: str = "pyingress", controller: str = "pyingress.io/ingress-controller"
) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


def ingress(
    name: str,
    host: str,
    service: str,
    *,
    namespace: str = "default",
    class_name: str | None = "pyingress",
    port: int = 80,
    tls_secret: str | None = None,
    annotations: dict[str, str] | None = None,
) -> JSON:
    spec: JSON = {
        "rules": [{
            "host": host,
            "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": port}}},
            }]},
        }],
    }  # fmt: skip
    if class_name:
        spec["ingressClassName"] = class_name
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def service(name: str, *, namespace: str = "default", port: int = 80) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port,
                                                       "targetPort": port}]},
    }


def endpoint_slice(
    service_name: str, port: int, *, namespace: str = "default", name: str | None = None,
    ready: bool = True,
) -> JSON:
    """One loopback endpoint: test backends differ by port, not by address."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-slice",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def secret(name: str, *, namespace: str = "default", data: dict[str, str] | None = None) -> JSON:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in (data or {}).items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": encoded,
    }

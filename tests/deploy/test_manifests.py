"""The kustomize bases render, validate strictly, and say what the deployment promises."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, SCHEMA_VERSION, render

BASES = [DEPLOY, DEPLOY / "announcer", DEPLOY / "acme"]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def validate(
    tool: str, objects: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    return subprocess.run(
        [tool, "--strict", "--quiet", "-k", SCHEMA_VERSION, str(rendered)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("base", BASES, ids=lambda p: p.name)
def test_base_renders_and_validates_strictly(
    base: Path, kubectl: str, kubernetes_validate: str, tmp_path: Path
) -> None:
    objects = render(kubectl, base)
    assert objects
    result = validate(kubernetes_validate, objects, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_an_unknown_field(
    kubectl: str, kubernetes_validate: str, tmp_path: Path
) -> None:
    """Guards the check above: strict validation must fail on a misspelt field."""
    objects = render(kubectl, DEPLOY)
    deployment = by_kind(objects)["Deployment"][0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    result = validate(kubernetes_validate, objects, tmp_path)
    assert result.returncode != 0
    assert "livenesProbe" in result.stdout + result.stderr


def test_controller_deployment_is_locked_down(kubectl: str) -> None:
    kinds = by_kind(render(kubectl, DEPLOY))
    assert {o["metadata"]["namespace"] for k, objs in kinds.items() for o in objs
            if k not in {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}} == {
        "pyingress"
    }  # fmt: skip
    deployment = kinds["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["args"][:2] == ["serve", "--in-cluster"]
    assert "--publish-service=pyingress/pyingress" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "https": 8443, "health": 10254}
    assert all(p["containerPort"] >= 1024 for p in container["ports"])
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert set(container["resources"]) == {"requests", "limits"}

    service = kinds["Service"][0]
    assert service["spec"]["type"] == "LoadBalancer"
    mapped = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert mapped == {80: "http", 443: "https"}
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()

    (ingress_class,) = kinds["IngressClass"]
    assert ingress_class["spec"]["controller"] == "pyingress.io/ingress-controller"


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_is_least_privilege(kubectl: str) -> None:
    kinds = by_kind(render(kubectl, DEPLOY))
    granted = rules(kinds["ClusterRole"][0])
    reads = {("networking.k8s.io", r, v) for r in ("ingresses", "ingressclasses")
             for v in ("get", "list", "watch")}  # fmt: skip
    reads |= {("", r, v) for r in ("services", "secrets") for v in ("get", "list", "watch")}
    reads |= {("discovery.k8s.io", "endpointslices", v) for v in ("get", "list", "watch")}
    writes = {("networking.k8s.io", "ingresses/status", v) for v in ("update", "patch")}
    events = {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    assert granted == reads | writes | events
    assert not any("*" in part for rule in granted for part in rule)
    lease_role = kinds["Role"][0]
    assert lease_role["metadata"]["namespace"] == "pyingress"
    assert rules(lease_role) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    service_account = kinds["ServiceAccount"][0]["metadata"]["name"]
    for binding in kinds["ClusterRoleBinding"] + kinds["RoleBinding"]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": service_account, "namespace": "pyingress"}
        ]


def test_acme_addon_only_adds_secret_writes(kubectl: str) -> None:
    kinds = by_kind(render(kubectl, DEPLOY / "acme"))
    assert set(kinds) == {"ClusterRole", "ClusterRoleBinding"}
    assert rules(kinds["ClusterRole"][0]) == {("", "secrets", v) for v in ("create", "update", "patch")}
    (binding,) = kinds["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pyingress", "namespace": "pyingress"}]


def test_announcer_has_only_net_raw(kubectl: str) -> None:
    kinds = by_kind(render(kubectl, DEPLOY / "announcer"))
    (daemonset,) = kinds["DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["args"][:2] == ["announce", "--in-cluster"]
    assert "--node-name=$(NODE_NAME)" in container["args"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    resources = {r for rule in kinds["ClusterRole"][0]["rules"] for r in rule["resources"]}
    assert resources == {"services", "services/status", "endpointslices", "events"}

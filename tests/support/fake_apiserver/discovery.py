"""Discovery documents: ``/version``, ``/api``, ``/apis`` and the per-group resource lists."""

from __future__ import annotations

from typing import Any

from tests.support.fake_apiserver import resources

JSON = dict[str, Any]

VERSION: JSON = {
    "major": "1",
    "minor": "20",
    "gitVersion": "v1.20.2-pyingress-fake",
    "gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56",
    "gitTreeState": "clean",
    "buildDate": "2021-01-13T13:20:00Z",
    "goVersion": "go1.19.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions() -> JSON:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "127.0.0.1:6443"}]}


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list() -> JSON:
    groups = [_group(name, versions) for name, versions in resources.groups().items()]
    for group in groups:
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> JSON | None:
    versions = resources.groups().get(name)
    return _group(name, versions) if versions else None


def resource_list(group: str, version: str) -> JSON | None:
    found = resources.in_group_version(group, version)
    if not found:
        return None
    entries: list[JSON] = []
    for r in found:
        entry: JSON = {"name": r.plural, "singularName": "", "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": r.verbs}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        entries.append(entry)
        if r.status_subresource:
            entries.append({"name": f"{r.plural}/status", "singularName": "",
                            "namespaced": r.namespaced, "kind": r.kind,
                            "verbs": ["get", "patch", "update"]})
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": entries}

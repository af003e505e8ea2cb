"""The resource types the double serves, with the strategy flags kube-apiserver gives each one.

The flags mirror ``pkg/registry/*/strategy.go``: they decide whether PUT may create, whether an
update must carry a resourceVersion, whether ``status`` is a separate subresource and whether the
server keeps ``metadata.generation``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = False
    create_on_update: bool = False
    unconditional_update: bool = True
    generation: bool = False
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The ``plural.group`` form used in error messages (``ingresses.networking.k8s.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> str:
        """Storage key: one bucket per group and plural (versions share storage)."""
        return f"{self.group}/{self.plural}"

    @property
    def verbs(self) -> list[str]:
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True,
             short_names=("ns",)),
    # Service's strategy allows create-on-update, but v1.20's Service REST wraps the store and
    # only creates when forced, which PUT never does: PUT on a missing Service is a 404.
    Resource("", "v1", "services", "Service", namespaced=True, status_subresource=True,
             short_names=("svc",)),
    Resource("", "v1", "secrets", "Secret", namespaced=True),
    Resource("", "v1", "endpoints", "Endpoints", namespaced=True, create_on_update=True,
             short_names=("ep",)),
    Resource("", "v1", "events", "Event", namespaced=True, create_on_update=True,
             short_names=("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced=True,
             status_subresource=True, generation=True, short_names=("ing",)),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False,
             generation=True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True,
             create_on_update=True, unconditional_update=False),
    Resource("events.k8s.io", "v1", "events", "Event", namespaced=True, create_on_update=True,
             short_names=("ev",)),
)


def find(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def groups() -> dict[str, list[str]]:
    """Named groups and their versions, for discovery (the core group is not listed)."""
    found: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group:
            versions = found.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
    return found


def in_group_version(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if (r.group, r.version) == (group, version)]


def by_kind(api_version: str, kind: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.api_version, resource.kind) == (api_version, kind):
            return resource
    return None

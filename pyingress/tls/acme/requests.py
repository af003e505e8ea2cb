"""Which certificates the served Ingresses ask built-in ACME for (no network, cheap to import).

``serve`` and ``check`` need this on every compile even when ACME never runs, so it lives apart
from the protocol client.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyingress.model import ObjectRef, Problem, Severity, Snapshot
from pyingress.routing.paths import normalize_host
from pyingress.routing.table import RouteTable
from pyingress.tls.policy import wants_builtin_acme


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """One certificate to keep: the hosts of one ``tls:`` entry, stored in one Secret."""

    ingress: ObjectRef
    secret: ObjectRef
    hosts: tuple[str, ...]


def acme_requests(
    snapshot: Snapshot, table: RouteTable
) -> tuple[list[CertificateRequest], list[Problem]]:
    """The certificates the served Ingresses ask ACME for, and what is wrong with the asks."""
    served = {tls_host.ingress for tls_host in table.tls_hosts.values()}
    requests: dict[ObjectRef, CertificateRequest] = {}
    problems: list[Problem] = []
    for ingress in snapshot.of_kind("Ingress"):
        meta = ingress.get("metadata") or {}
        ref = ObjectRef("Ingress", str(meta.get("namespace") or "default"), str(meta.get("name")))
        if ref not in served or not wants_builtin_acme(meta.get("annotations") or {}):
            continue
        for entry in (ingress.get("spec") or {}).get("tls") or []:
            hosts = tuple(sorted({normalize_host(str(h)) for h in entry.get("hosts") or []}))
            secret_name = entry.get("secretName")
            if not hosts or not secret_name:
                message = "a tls entry for ACME needs hosts and a secretName"
                problems.append(Problem(ref, "AcmeNotPossible", message, Severity.WARNING))
                continue
            if any(h.startswith("*.") for h in hosts):
                message = (
                    f"HTTP-01 cannot issue wildcard names ({', '.join(hosts)}); "
                    "use a certificate Secret"
                )
                problems.append(Problem(ref, "AcmeNotPossible", message))
                continue
            secret = ObjectRef("Secret", ref.namespace, str(secret_name))
            other = requests.get(secret)
            if other is not None and other.hosts != hosts:
                message = f"Secret {secret.namespaced_name} is already ordered for {other.ingress}"
                problems.append(Problem(ref, "AcmeConflict", message))
                continue
            requests[secret] = CertificateRequest(ref, secret, hosts)
    return list(requests.values()), problems

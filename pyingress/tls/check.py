"""What ``pyingress check`` reports about certificates: the same checks ``serve`` runs.

A Secret that ``serve`` would refuse (bad PEM, key mismatch, expired, not yet valid, wrong
names) is found before it is deployed, with the same problem text ``serve`` logs and records
as an Event.
"""

from __future__ import annotations

from pyingress.model import ObjectRef, Problem, Snapshot
from pyingress.routing.table import RouteTable
from pyingress.tls.acme.requests import acme_requests
from pyingress.tls.certstore import CertificateStore, Clock, utc_now


def secret_ref(value: str | None) -> ObjectRef | None:
    """``NAMESPACE/NAME`` (as ``--default-ssl-certificate`` takes it) as a Secret reference."""
    if not value:
        return None
    namespace, _, name = value.partition("/")
    return ObjectRef("Secret", namespace, name)


def certificate_problems(
    snapshot: Snapshot,
    table: RouteTable,
    default_secret: str | None = None,
    clock: Clock = utc_now,
) -> list[Problem]:
    """Every problem with the TLS Secrets ``table`` uses and with the ACME annotations.

    Missing Secrets are the compiler's to report (``SecretNotFound``), not repeated here.
    """
    store = CertificateStore(secret_ref(default_secret), clock)
    return store.update(snapshot, table) + acme_requests(snapshot, table)[1]

"""Which certificate each TLS handshake gets: SNI selection over Secrets, with hot reload.

The listener is given one ``ssl.SSLContext`` (:attr:`CertificateStore.listening_context`) for
its whole life. Its SNI callback looks the requested name up in the current mapping and switches
the connection to that certificate's context; :meth:`CertificateStore.update` builds a new
mapping and swaps it in with one assignment. New handshakes see the new certificates, open
connections keep the one they negotiated.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from pyingress.model import ObjectRef, Problem, Severity, Snapshot
from pyingress.routing.paths import normalize_host
from pyingress.routing.table import RouteTable
from pyingress.tls.certs import (
    CertificateBundle,
    CertificateError,
    content_digest,
    load_bundle,
    secret_material,
)
from pyingress.tls.context import server_context
from pyingress.tls.selfsigned import self_signed_pem

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class _Mapping:
    """One immutable generation of the SNI mapping; replaced whole, never edited."""

    default: CertificateBundle
    exact: dict[str, CertificateBundle] = field(default_factory=dict)
    wildcard: dict[str, CertificateBundle] = field(default_factory=dict)
    """Keyed by parent domain: a ``*.example.com`` host is stored under ``example.com``."""

    def lookup(self, name: str) -> CertificateBundle | None:
        bundle = self.exact.get(name)
        if bundle is None:
            dot = name.find(".")
            if dot > 0:
                bundle = self.wildcard.get(name[dot + 1 :])
        return bundle


class CertificateStore:
    """Certificates by host name, built from Secrets and the route table's ``tls_hosts``.

    A Secret that cannot serve (bad PEM, key mismatch, expired) is reported as a
    :class:`~pyingress.model.Problem`; the hosts it was meant for keep the last good
    certificate of that Secret, or get the default one.
    """

    def __init__(self, default_secret: ObjectRef | None = None, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._default_secret = default_secret
        cert_pem, key_pem = self_signed_pem(now=clock())
        self.self_signed = load_bundle(cert_pem, key_pem, clock())
        self._cache: dict[str, CertificateBundle] = {}
        self._last_good: dict[ObjectRef, CertificateBundle] = {}
        self._mapping = _Mapping(self.self_signed)
        self.listening_context = self._new_listening_context(cert_pem, key_pem)

    def _new_listening_context(self, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
        context = server_context(cert_pem, key_pem)
        context.sni_callback = self._on_sni
        return context

    def _on_sni(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        ssl_object.context = self.select(server_name).context

    def select(self, server_name: str | None) -> CertificateBundle:
        """The certificate for ``server_name``: exact host, then wildcard host, else default."""
        mapping = self._mapping
        if server_name:
            bundle = mapping.lookup(server_name.rstrip(".").lower())
            if bundle is not None:
                return bundle
        return mapping.default

    def certificate_for(self, host: str) -> CertificateBundle | None:
        """The host's own certificate (not the default); None when it has none.

        The data plane uses it to decide on HSTS, which is only sent for hosts with a
        certificate of their own.
        """
        return self._mapping.lookup(normalize_host(host))

    @property
    def default(self) -> CertificateBundle:
        return self._mapping.default

    def update(self, snapshot: Snapshot, table: RouteTable) -> list[Problem]:
        """Rebuild the mapping from the Secrets for ``table.tls_hosts``; swap it in.

        A missing Secret is not reported here: the compiler already reports it
        (``SecretNotFound``), and twice would mean two Events.
        """
        now = self._clock()
        problems: list[Problem] = []
        reported: set[tuple[ObjectRef, ObjectRef]] = set()
        default = self._resolve_default(snapshot, now, problems)
        exact: dict[str, CertificateBundle] = {}
        wildcard: dict[str, CertificateBundle] = {}
        used: dict[str, CertificateBundle] = {}
        for name in sorted(table.tls_hosts):
            tls_host = table.tls_hosts[name]
            if tls_host.secret is None:
                continue
            bundle, error = self._bundle_for(snapshot, tls_host.secret, now)
            key = (tls_host.ingress, tls_host.secret)
            missing = snapshot.get("Secret", key[1].namespace, key[1].name) is None
            if error is not None and key not in reported and not missing:
                reported.add(key)
                problems.append(_problem(tls_host.ingress, tls_host.secret, error, bundle))
            if bundle is None:
                continue
            used[bundle.digest] = bundle
            if not bundle.covers(name):
                covered = ", ".join(sorted(bundle.names)) or "no names"
                problems.append(
                    Problem(
                        tls_host.ingress,
                        "CertificateNameMismatch",
                        f"the certificate in Secret {tls_host.secret.namespaced_name} does not "
                        f"cover {name!r} (it covers {covered})",
                        Severity.WARNING,
                    )
                )
            if name.startswith("*."):
                wildcard[name[2:]] = bundle
            else:
                exact[name] = bundle
        used[default.digest] = default
        self._cache = used
        self._mapping = _Mapping(default, exact, wildcard)
        return problems

    def _resolve_default(
        self, snapshot: Snapshot, now: datetime.datetime, problems: list[Problem]
    ) -> CertificateBundle:
        ref = self._default_secret
        if ref is None:
            return self.self_signed
        bundle, error = self._bundle_for(snapshot, ref, now)
        if error is not None:
            problems.append(
                Problem(ref, "InvalidDefaultCertificate", f"--default-ssl-certificate: {error}")
            )
        return bundle if bundle is not None else self.self_signed

    def _bundle_for(
        self, snapshot: Snapshot, ref: ObjectRef, now: datetime.datetime
    ) -> tuple[CertificateBundle | None, str | None]:
        """The bundle to serve for Secret ``ref`` and, if it is not the Secret's current content,
        why not."""
        fallback = self._last_good.get(ref)
        if fallback is not None and fallback.expired(now):
            fallback = None
        secret = snapshot.get("Secret", ref.namespace, ref.name)
        if secret is None:
            self._last_good.pop(ref, None)
            return None, f"Secret {ref.namespaced_name} not found; serving the default certificate"
        try:
            chain_pem, key_pem = secret_material(secret)
            bundle = self._load(chain_pem, key_pem, now)
        except CertificateError as exc:
            return fallback, f"Secret {ref.namespaced_name}: {exc}"
        self._last_good[ref] = bundle
        return bundle, None

    def _load(self, chain_pem: bytes, key_pem: bytes, now: datetime.datetime) -> CertificateBundle:
        cached = self._cache.get(content_digest(chain_pem, key_pem))
        if cached is not None:
            if cached.expired(now):
                raise CertificateError(f"the certificate expired at {cached.not_after.isoformat()}")
            return cached
        bundle = load_bundle(chain_pem, key_pem, now)
        self._cache[bundle.digest] = bundle
        return bundle


def _problem(
    ingress: ObjectRef, secret: ObjectRef, error: str, serving: CertificateBundle | None
) -> Problem:
    keeps = "the previous certificate keeps serving" if serving else "serving the default one"
    return Problem(ingress, "InvalidCertificate", f"{error}; {keeps}")

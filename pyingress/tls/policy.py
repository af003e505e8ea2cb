"""HTTPS enforcement rules: when to redirect to HTTPS, where to, and the HSTS header.

Everything here is pure and computed once per route at compile time (:func:`parse_tls_policy`)
or is a few string operations per request (:func:`redirect_location`), so the data plane can
call it on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyingress.routing.paths import normalize_host

if TYPE_CHECKING:
    from pyingress.routing.annotations import Annotations
    from pyingress.routing.policy import PolicyContext

ACME_ANNOTATIONS = ("pyingress.io/acme", "kubernetes.io/tls-acme")
CERT_MANAGER_ANNOTATIONS = ("cert-manager.io/issuer", "cert-manager.io/cluster-issuer")


def wants_builtin_acme(annotations: Mapping[str, Any]) -> bool:
    """Whether an Ingress asks built-in ACME for its certificates (cert-manager's stay its own)."""
    if any(name in annotations for name in CERT_MANAGER_ANNOTATIONS):
        return False
    values = (str(annotations.get(name, "")).strip().lower() for name in ACME_ANNOTATIONS)
    return "true" in values


ONE_YEAR = 31536000
REDIRECT_STATUS = 308
"""Permanent and method-preserving: a POST stays a POST after the redirect."""


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """The TLS behaviour of one Ingress's routes, from its annotations.

    ``ssl_redirect`` applies to hosts under ``tls:``; ``force_ssl_redirect`` redirects even
    hosts without ``tls:`` (TLS terminated in front, e.g. by Cloudflare). HSTS is only sent
    for ``certificate_hosts``: pinning browsers to HTTPS for a name that is served with the
    default certificate would lock its users out.
    """

    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    hsts: bool = True
    hsts_max_age: int = ONE_YEAR
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    acme: bool = False
    tls_hosts: frozenset[str] = frozenset()
    """The Ingress's hosts under ``tls:`` (``*.example.com`` for wildcards)."""
    certificate_hosts: frozenset[str] = frozenset()
    """Those of ``tls_hosts`` with a certificate of their own (a ``secretName``)."""

    def redirects(self, host_has_tls: bool) -> bool:
        """Whether a plain-HTTP request to this route is sent to HTTPS."""
        return self.force_ssl_redirect or (host_has_tls and self.ssl_redirect)

    def redirects_host(self, host: str) -> bool:
        """:meth:`redirects` for a normalised request host."""
        return self.force_ssl_redirect or (self.ssl_redirect and _listed(host, self.tls_hosts))

    def hsts_for(self, host: str) -> bytes | None:
        """The HSTS value for an HTTPS response to ``host``, or None."""
        if not _listed(host, self.certificate_hosts):
            return None
        return self.hsts_value

    @property
    def hsts_value(self) -> bytes | None:
        """The ``Strict-Transport-Security`` value, computed once per policy."""
        return hsts_header(self)


DEFAULT_TLS_POLICY = TLSPolicy()


def parse_tls_policy(
    annotations: Annotations, tls: Iterable[Mapping[str, object]] = ()
) -> TLSPolicy:
    """The policy for an Ingress's annotations and its ``spec.tls`` list.

    Raises :class:`~pyingress.routing.annotations.AnnotationError` on a bad value, like every
    other annotation: the compiler reports it and skips the Ingress rather than guess.
    """
    tls_hosts: set[str] = set()
    certificate_hosts: set[str] = set()
    for entry in tls:
        listed = entry.get("hosts")
        hosts = {normalize_host(str(h)) for h in listed} if isinstance(listed, list) else set()
        tls_hosts |= hosts
        if entry.get("secretName"):
            certificate_hosts |= hosts
    return TLSPolicy(
        ssl_redirect=annotations.boolean("ssl-redirect", True),
        force_ssl_redirect=annotations.boolean("force-ssl-redirect", False),
        hsts=annotations.boolean("hsts", True),
        hsts_max_age=annotations.integer("hsts-max-age", ONE_YEAR, maximum=10**10),
        hsts_include_subdomains=annotations.boolean("hsts-include-subdomains", True),
        hsts_preload=annotations.boolean("hsts-preload", False),
        acme=wants_builtin_acme(annotations.values),
        tls_hosts=frozenset(tls_hosts),
        certificate_hosts=frozenset(certificate_hosts),
    )


def tls_policy(annotations: Annotations, context: PolicyContext) -> TLSPolicy | None:
    """The compiler's entry point: the TLS part of a route policy for one Ingress.

    None when the Ingress asks for nothing TLS-related, so its routes keep the fast path.
    """
    ref = context.ingress
    ingress = context.snapshot.get(ref.kind, ref.namespace, ref.name) or {}
    policy = parse_tls_policy(annotations, (ingress.get("spec") or {}).get("tls") or [])
    return None if policy == DEFAULT_TLS_POLICY else policy


def hsts_header(policy: TLSPolicy) -> bytes | None:
    """The HSTS value to send on HTTPS responses, or None when HSTS is off.

    Only send it for hosts with a certificate of their own: pinning a browser to HTTPS for a
    name served with the default certificate would lock users out.
    """
    if not policy.hsts:
        return None
    parts = [b"max-age=%d" % policy.hsts_max_age]
    if policy.hsts_include_subdomains:
        parts.append(b"includeSubDomains")
    if policy.hsts_preload:
        parts.append(b"preload")
    return b"; ".join(parts)


_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-.")


def redirect_location(host: bytes, target: bytes, https_port: int = 443) -> bytes | None:
    """The ``Location`` for the HTTPS redirect of a request, or None if it cannot be safe.

    ``host`` is the raw Host header (its port is dropped; ``https_port`` is added unless 443);
    ``target`` the raw request target, path and query kept byte for byte. Returns None (the
    caller answers 400) for a Host that is not a plain DNS name or IP address, or a target that
    is not origin-form, so a crafted request can never redirect elsewhere or split headers.
    """
    name = _host_name(host)
    if name is None or not target.startswith(b"/") or target.startswith(b"//"):
        return None
    if any(byte < 0x21 or byte == 0x7F for byte in target):
        return None
    authority = name if https_port == 443 else b"%s:%d" % (name, https_port)
    return b"https://" + authority + target


def _host_name(host: bytes) -> bytes | None:
    host = host.strip().lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        literal = host[1:end] if end > 0 else b""
        if not literal or any(chr(c) not in "0123456789abcdef:." for c in literal):
            return None
        return b"[" + literal + b"]"
    name = host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host
    name = name.rstrip(b".")
    if not name or not all(byte in _HOST_CHARS for byte in name):
        return None
    return name


def _listed(host: str, hosts: frozenset[str]) -> bool:
    if host in hosts:
        return True
    dot = host.find(".")
    return dot > 0 and f"*.{host[dot + 1 :]}" in hosts

"""Parsing and checking a certificate and its key before it is allowed to serve."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from pyingress.tls.context import server_context

TLS_SECRET_TYPE = "kubernetes.io/tls"


class CertificateError(ValueError):
    """A certificate or key that cannot serve; the message is safe to show (no key material)."""


@dataclass(frozen=True, slots=True)
class CertificateBundle:
    """A checked certificate chain and key, ready to serve through :attr:`context`."""

    digest: str
    """SHA-256 of the PEM inputs: equal content, equal bundle (the cache key)."""
    leaf: x509.Certificate
    names: frozenset[str]
    """Lower-case DNS names of the leaf (SAN, or the CN when there is no SAN)."""
    context: ssl.SSLContext

    @property
    def not_before(self) -> datetime.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        return self.leaf.not_valid_after_utc

    def covers(self, host: str) -> bool:
        """Whether the certificate is valid for ``host`` (one-label wildcards, RFC 6125)."""
        host = host.lower()
        if host in self.names:
            return True
        if host.startswith("*."):
            return False
        dot = host.find(".")
        return dot > 0 and f"*.{host[dot + 1 :]}" in self.names

    def expired(self, now: datetime.datetime) -> bool:
        return now >= self.not_after


def content_digest(chain_pem: bytes, key_pem: bytes) -> str:
    return hashlib.sha256(chain_pem + b"\0" + key_pem).hexdigest()


def load_bundle(chain_pem: bytes, key_pem: bytes, now: datetime.datetime) -> CertificateBundle:
    """Check and load a PEM chain and key; raises :class:`CertificateError` saying why not."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CertificateError(f"tls.crt is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if isinstance(exc, TypeError) else "it cannot be parsed"
        raise CertificateError(f"tls.key is not a usable PEM private key: {reason}") from None
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CertificateError("tls.key has an unsupported key type")
    leaf = chain[0]
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateError("tls.key does not match the certificate in tls.crt")
    if now >= leaf.not_valid_after_utc:
        raise CertificateError(f"the certificate expired at {leaf.not_valid_after_utc.isoformat()}")
    if now < leaf.not_valid_before_utc:
        raise CertificateError(
            f"the certificate is not valid before {leaf.not_valid_before_utc.isoformat()}"
        )
    try:
        context = server_context(chain_pem, key_pem)
    except ssl.SSLError as exc:
        raise CertificateError(f"OpenSSL refused the certificate: {exc.reason}") from None
    return CertificateBundle(content_digest(chain_pem, key_pem), leaf, dns_names(leaf), context)


def dns_names(cert: x509.Certificate) -> frozenset[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return frozenset(str(attr.value).lower() for attr in cns)
    return frozenset(name.lower() for name in san.get_values_for_type(x509.DNSName))


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def secret_material(secret: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The ``(tls.crt, tls.key)`` bytes of a Secret, from ``data`` (base64) or ``stringData``.

    ``stringData`` wins, as the API server merges it over ``data`` on write.
    """
    secret_type = secret.get("type")
    if secret_type not in (None, TLS_SECRET_TYPE, "Opaque"):
        raise CertificateError(f"the Secret has type {secret_type!r}, not {TLS_SECRET_TYPE!r}")
    values: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise CertificateError(f"data[{key!r}] is not valid base64") from None
    for key, value in (secret.get("stringData") or {}).items():
        values[key] = str(value).encode()
    missing = [key for key in ("tls.crt", "tls.key") if not values.get(key)]
    if missing:
        raise CertificateError(f"the Secret has no {' or '.join(missing)}")
    return values["tls.crt"], values["tls.key"]

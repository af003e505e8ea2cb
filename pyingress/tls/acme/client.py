"""A small asynchronous ACME client (RFC 8555): account, order, HTTP-01, finalize, download.

Written on httpx rather than certbot's ``acme`` package because that one is synchronous
(``requests``) and would need a thread per order inside an asyncio program; the protocol part
needed here is small. Only HTTP-01 is used (see ``docs/tls.md`` for why not TLS-ALPN-01).
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pyingress.tls.acme import LETS_ENCRYPT, LETS_ENCRYPT_STAGING
from pyingress.tls.acme.jws import AccountKey, b64url

__all__ = [
    "LETS_ENCRYPT",
    "LETS_ENCRYPT_STAGING",
    "AcmeClient",
    "AcmeError",
    "IssuedCertificate",
    "TokenPublisher",
    "http_client",
]

USER_AGENT = "pyingress-acme"
BAD_NONCE = "urn:ietf:params:acme:error:badNonce"


class AcmeError(Exception):
    """A refusal by the CA, carrying its problem document (type and detail)."""

    def __init__(
        self, detail: str, *, type_: str = "", status: int = 0, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.type = type_
        self.status = status
        self.retry_after = retry_after


class TokenPublisher(Protocol):
    """Where HTTP-01 key authorizations are published while a challenge is pending.

    :meth:`publish` returns once the token can be answered (in a cluster, once the other
    replicas can see it too): the CA is asked to validate right after.
    """

    async def publish(self, token: str, key_authorization: str) -> None: ...

    async def withdraw(self, token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    chain_pem: bytes
    key_pem: bytes


class AcmeClient:
    """One ACME account at one CA directory."""

    def __init__(
        self,
        directory_url: str,
        key: AccountKey,
        *,
        email: str | None = None,
        http: httpx.AsyncClient | None = None,
        poll_interval: float = 1.0,
        timeout: float = 120.0,
    ) -> None:
        self.directory_url = directory_url
        self.key = key
        self.email = email
        self._http = http or httpx.AsyncClient(timeout=30.0)
        self._directory: dict[str, Any] | None = None
        self._nonces: list[str] = []
        self._kid: str | None = None
        self._lock = asyncio.Lock()
        self.poll_interval = poll_interval
        self.timeout = timeout

    async def aclose(self) -> None:
        await self._http.aclose()

    async def issue(self, names: Sequence[str], publisher: TokenPublisher) -> IssuedCertificate:
        """Order a certificate for ``names``, prove control over HTTP-01, and download it."""
        await self.register()
        response = await self._post(
            (await self.directory())["newOrder"],
            {"identifiers": [{"type": "dns", "value": name} for name in names]},
        )
        order_url = response.headers["Location"]
        order: dict[str, Any] = response.json()
        for authz_url in order["authorizations"]:
            await self._authorize(authz_url, publisher)
        order = await self._poll(order_url, done=("ready", "valid"), what="order")
        cert_key = ec.generate_private_key(ec.SECP256R1())
        if order["status"] == "ready":
            csr = _csr(names, cert_key)
            await self._post(order["finalize"], {"csr": b64url(csr)})
            order = await self._poll(order_url, done=("valid",), what="order")
        chain = await self._post(order["certificate"], None)
        key_pem = cert_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return IssuedCertificate(chain.content, key_pem)

    async def directory(self) -> dict[str, Any]:
        if self._directory is None:
            response = await self._http.get(self.directory_url, headers=_headers())
            _raise_for_problem(response)
            self._directory = response.json()
        return self._directory

    async def register(self) -> str:
        """Create (or find, by key) the account; returns its URL, the ``kid`` of later requests."""
        async with self._lock:
            if self._kid is None:
                payload: dict[str, Any] = {"termsOfServiceAgreed": True}
                if self.email:
                    payload["contact"] = [f"mailto:{self.email}"]
                url = (await self.directory())["newAccount"]
                response = await self._post(url, payload, use_jwk=True)
                self._kid = response.headers["Location"]
            return self._kid

    async def _authorize(self, authz_url: str, publisher: TokenPublisher) -> None:
        authz = (await self._post(authz_url, None)).json()
        if authz["status"] == "valid":
            return
        name = authz["identifier"]["value"]
        challenge = next((c for c in authz["challenges"] if c["type"] == "http-01"), None)
        if challenge is None:
            raise AcmeError(f"the CA offers no http-01 challenge for {name}")
        token = challenge["token"]
        try:
            await publisher.publish(token, self.key.key_authorization(token))
            await self._post(challenge["url"], {})
            authz = await self._poll(authz_url, done=("valid",), what=f"authorization of {name}")
        finally:
            await publisher.withdraw(token)

    async def _poll(self, url: str, *, done: tuple[str, ...], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            response = await self._post(url, None)
            body: dict[str, Any] = response.json()
            status = body.get("status")
            if status in done:
                return body
            if status == "invalid":
                raise _invalid(what, body)
            if time.monotonic() > deadline:
                raise AcmeError(f"{what} still {status!r} after {self.timeout:.0f}s")
            delay = _retry_after(response) or self.poll_interval
            await asyncio.sleep(min(delay, 30.0))

    async def _post(self, url: str, payload: Any, *, use_jwk: bool = False) -> httpx.Response:
        """Signed POST (or POST-as-GET when ``payload`` is None), retrying rejected nonces."""
        for attempt in range(5):
            nonce = await self._nonce()
            kid = None if use_jwk else self._kid
            body = self.key.sign(url, nonce, payload, kid)
            response = await self._http.post(
                url, json=body, headers=_headers({"Content-Type": "application/jose+json"})
            )
            if "Replay-Nonce" in response.headers:
                self._nonces.append(response.headers["Replay-Nonce"])
            problem = _problem(response)
            if problem is not None and problem.type == BAD_NONCE and attempt < 4:
                continue
            if problem is not None:
                raise problem
            return response
        raise AssertionError("unreachable")

    async def _nonce(self) -> str:
        if self._nonces:
            return self._nonces.pop()
        response = await self._http.head((await self.directory())["newNonce"], headers=_headers())
        return response.headers["Replay-Nonce"]


def http_client(ca_bundle: str | None = None) -> httpx.AsyncClient:
    """The HTTP client for the CA: system trust, or only ``ca_bundle`` (``--acme-ca-bundle``)."""
    verify: ssl.SSLContext | bool = True
    if ca_bundle:
        verify = ssl.create_default_context(cafile=ca_bundle)
    return httpx.AsyncClient(timeout=30.0, verify=verify)


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"User-Agent": USER_AGENT, **(extra or {})}


def _csr(names: Sequence[str], key: ec.EllipticCurvePrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _problem(response: httpx.Response) -> AcmeError | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or f"HTTP {response.status_code} from the CA")
    return AcmeError(
        detail,
        type_=str(body.get("type", "")),
        status=response.status_code,
        retry_after=_retry_after(response),
    )


def _raise_for_problem(response: httpx.Response) -> None:
    problem = _problem(response)
    if problem is not None:
        raise problem


def _invalid(what: str, body: dict[str, Any]) -> AcmeError:
    """The CA's own words for why an order or authorization failed."""
    errors = [body.get("error")] if body.get("error") else []
    for challenge in body.get("challenges", []):
        if challenge.get("error"):
            errors.append(challenge["error"])
    details = "; ".join(str(e.get("detail", e)) for e in errors if isinstance(e, dict))
    kind = next((str(e.get("type", "")) for e in errors if isinstance(e, dict)), "")
    return AcmeError(f"{what} is invalid: {details or 'no detail given'}", type_=kind)

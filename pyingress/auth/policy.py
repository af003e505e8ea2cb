"""The auth part of a route policy: pure, frozen data parsed from an Ingress's annotations.

Secret material (password hashes, client secrets) lives in fields with ``repr=False`` so a
policy can be logged or printed by ``pyingress routes`` without leaking it. A bad annotation
value raises :class:`AnnotationError` (the Ingress is skipped); a missing or bad referenced
Secret is a problem on the Ingress and the route fails closed (every request is refused).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pyingress.auth.htpasswd import HtpasswdError, parse_auth_map, parse_htpasswd
from pyingress.model import ObjectRef, Problem
from pyingress.routing.annotations import AnnotationError, Annotations, Network

if TYPE_CHECKING:
    from pyingress.routing.policy import PolicyContext

SATISFY_ALL = "all"
SATISFY_ANY = "any"
AUTH_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic auth against an htpasswd Secret; no users means every request is refused."""

    realm: str
    secret: ObjectRef
    users: tuple[tuple[str, str], ...] = field(repr=False, default=())
    forward_authorization: bool = False


@dataclass(frozen=True, slots=True)
class OIDCClient:
    """One OpenID Connect client registration at one provider."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False, default="")

    @property
    def key(self) -> str:
        """Names the client in cookies without carrying its secret."""
        return f"{self.issuer}|{self.client_id}"


@dataclass(frozen=True, slots=True)
class OIDCAuth:
    """Login with the OpenID Connect provider, plus who may pass.

    ``client`` None means the process-wide provider (the ``--oidc-*`` flags).
    ``unavailable`` non-empty means the per-Ingress Secret is missing or bad: fail closed.
    """

    client: OIDCClient | None = None
    allowed_emails: frozenset[str] = frozenset()
    allowed_email_domains: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    pass_access_token: bool = False
    unavailable: str = ""

    def allows(self, email: str, groups: tuple[str, ...]) -> bool:
        """Whether a signed-in user passes this route's rules (no rules: every user)."""
        if not (self.allowed_emails or self.allowed_email_domains or self.allowed_groups):
            return True
        address = email.lower()
        if address and address in self.allowed_emails:
            return True
        domain = address.rpartition("@")[2]
        if address and "@" in address and domain in self.allowed_email_domains:
            return True
        return bool(self.allowed_groups.intersection(groups))


@dataclass(frozen=True, slots=True)
class ExternalAuth:
    """ingress-nginx ``auth-url``: a sub-request decides (oauth2-proxy compatible)."""

    url: str
    signin: str = ""
    signin_redirect_param: str = "rd"
    response_headers: tuple[str, ...] = ()
    method: str = ""
    """Empty: the original request's method."""


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Who may use a route: an IP allow-list and/or one or more authentication methods.

    With ``satisfy == "any"`` a client inside ``allow`` skips authentication; with ``"all"``
    (the default) it must be inside ``allow`` (when set) and authenticate (when set).
    """

    basic: BasicAuth | None = None
    oidc: OIDCAuth | None = None
    external: ExternalAuth | None = None
    allow: tuple[Network, ...] = ()
    satisfy: str = SATISFY_ALL
    skip_paths: tuple[str, ...] = ()

    @property
    def authenticates(self) -> bool:
        return self.basic is not None or self.oidc is not None or self.external is not None


def parse_auth(annotations: Annotations, context: PolicyContext) -> AuthPolicy | None:
    """The auth policy of an Ingress (the one line ``parse_policy`` calls)."""
    reader = SecretReader(context.snapshot.get, context.problems, context.ingress)
    return parse_auth_policy(annotations, reader)


def parse_auth_policy(annotations: Annotations, secrets: SecretReader) -> AuthPolicy | None:
    """The auth policy an Ingress asks for, or None when it asks for none."""
    allow = annotations.networks("allowlist-source-range") or annotations.networks(
        "whitelist-source-range"
    )
    policy = AuthPolicy(
        basic=_basic(annotations, secrets),
        oidc=_oidc(annotations, secrets),
        external=_external(annotations),
        allow=allow,
        satisfy=annotations.choice("satisfy", (SATISFY_ALL, SATISFY_ANY), SATISFY_ALL),
        skip_paths=_skip_paths(annotations),
    )
    if not policy.authenticates and not policy.allow:
        return None
    return policy


class SecretReader:
    """Reads Secrets for the parsers and turns what is wrong with them into problems."""

    def __init__(self, lookup: Any, problems: list[Problem], ingress: ObjectRef) -> None:
        self._lookup = lookup
        self.problems = problems
        self.ingress = ingress

    def read(self, reference: str, annotation: str) -> tuple[ObjectRef, dict[str, bytes] | None]:
        """The decoded data of the Secret ``[ns/]name``, or None after reporting a problem."""
        namespace, _, name = reference.strip().rpartition("/")
        ref = ObjectRef("Secret", namespace or self.ingress.namespace, name)
        secret = self._lookup("Secret", ref.namespace, ref.name)
        if secret is None:
            self.report("AuthSecretNotFound", f"{annotation}: {ref} does not exist")
            return ref, None
        try:
            return ref, secret_data(secret)
        except ValueError as exc:
            self.report("AuthSecretInvalid", f"{annotation}: {ref}: {exc}")
            return ref, None

    def report(self, reason: str, message: str) -> None:
        self.problems.append(
            Problem(self.ingress, reason, message + "; every request to its routes is refused")
        )


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) merged with ``stringData`` (which wins, as on write)."""
    values: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise ValueError(f"data[{key!r}] is not valid base64") from None
    for key, value in (secret.get("stringData") or {}).items():
        values[str(key)] = str(value).encode()
    return values


def _basic(annotations: Annotations, secrets: SecretReader) -> BasicAuth | None:
    auth_type = annotations.raw("auth-type")
    if auth_type is None:
        return None
    if auth_type != "basic":
        raise AnnotationError(
            f'annotation {annotations.key_of("auth-type")}={auth_type!r}: only "basic" is '
            "supported (digest auth is not)"
        )
    reference = annotations.raw("auth-secret")
    if not reference or reference.count("/") > 1:
        raise AnnotationError(
            f"annotation auth-type=basic needs auth-secret: [namespace/]name, got {reference!r}"
        )
    secret_type = annotations.choice("auth-secret-type", ("auth-file", "auth-map"), "auth-file")
    realm = annotations.text("auth-realm", "Authentication Required")
    if '"' in realm or "\\" in realm or not realm.isprintable():
        raise AnnotationError(f"annotation auth-realm={realm!r}: no quotes or backslashes")
    forward = annotations.boolean("auth-forward-authorization")
    ref, data = secrets.read(reference, "auth-secret")
    users: tuple[tuple[str, str], ...] = ()
    if data is not None:
        try:
            users = _users(data, secret_type)
        except (HtpasswdError, UnicodeDecodeError) as exc:
            secrets.report("AuthSecretInvalid", f"auth-secret: {ref}: {exc}")
    return BasicAuth(realm, ref, users, forward)


def _users(data: dict[str, bytes], secret_type: str) -> tuple[tuple[str, str], ...]:
    if secret_type == "auth-map":
        return parse_auth_map((key, value.decode()) for key, value in data.items())
    if "auth" not in data:
        raise HtpasswdError('the Secret has no key "auth" (an htpasswd file)')
    users = parse_htpasswd(data["auth"].decode())
    if not users:
        raise HtpasswdError('key "auth" holds no users')
    return users


def _oidc(annotations: Annotations, secrets: SecretReader) -> OIDCAuth | None:
    wants = annotations.boolean("auth-oidc") or annotations.raw("oidc-secret") is not None
    if not wants:
        return None
    client: OIDCClient | None = None
    unavailable = ""
    reference = annotations.raw("oidc-secret")
    if reference:
        ref, data = secrets.read(reference, "oidc-secret")
        client, unavailable = _oidc_client(data, ref, secrets)
    return OIDCAuth(
        client=client,
        allowed_emails=frozenset(w.lower() for w in annotations.words("auth-allowed-emails")),
        allowed_email_domains=frozenset(
            w.lower().lstrip("@") for w in annotations.words("auth-allowed-email-domains")
        ),
        allowed_groups=frozenset(annotations.words("auth-allowed-groups")),
        pass_access_token=annotations.boolean("auth-pass-access-token"),
        unavailable=unavailable,
    )


def _oidc_client(
    data: dict[str, bytes] | None, ref: ObjectRef, secrets: SecretReader
) -> tuple[OIDCClient | None, str]:
    if data is None:
        return None, f"{ref} is missing or invalid"
    values = {}
    for key in ("issuer", "client-id", "client-secret"):
        try:
            values[key] = data.get(key, b"").decode().strip()
        except UnicodeDecodeError:
            values[key] = ""
    missing = [key for key, value in values.items() if not value]
    if missing:
        secrets.report("AuthSecretInvalid", f"oidc-secret: {ref} has no {', '.join(missing)}")
        return None, f"{ref} is incomplete"
    if not _is_http_url(values["issuer"]):
        secrets.report("AuthSecretInvalid", f"oidc-secret: {ref}: issuer is not an http(s) URL")
        return None, f"{ref} has a bad issuer"
    return OIDCClient(values["issuer"], values["client-id"], values["client-secret"]), ""


def _external(annotations: Annotations) -> ExternalAuth | None:
    url = annotations.raw("auth-url")
    if url is None:
        return None
    if not _is_http_url(url.replace("$host", "h")):
        raise AnnotationError(f"annotation auth-url={url!r}: expected an http(s) URL")
    signin = annotations.text("auth-signin")
    if signin and not _is_http_url(signin.replace("$host", "h")) and not signin.startswith("/"):
        raise AnnotationError(f"annotation auth-signin={signin!r}: expected a URL or a path")
    param = annotations.text("auth-signin-redirect-param", "rd")
    if not param.replace("_", "").replace("-", "").isalnum():
        raise AnnotationError(f"annotation auth-signin-redirect-param={param!r}: not a name")
    names = annotations.words("auth-response-headers")
    for name in names:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise AnnotationError(f"annotation auth-response-headers: {name!r} is not a header")
    method = annotations.text("auth-method").upper()
    if method and method not in AUTH_METHODS:
        raise AnnotationError(f"annotation auth-method={method!r}: expected an HTTP method")
    return ExternalAuth(url, signin, param, tuple(names), method)


def _skip_paths(annotations: Annotations) -> tuple[str, ...]:
    paths = annotations.words("auth-skip-paths")
    for item in paths:
        if not item.startswith("/"):
            raise AnnotationError(f"annotation auth-skip-paths: {item!r} must start with /")
    return paths


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc

"""The ``--oidc-*`` flags of ``serve`` and the login settings they make.

Secrets come from files only (a flag's value shows up in ``ps`` and in the Pod spec).
"""

from __future__ import annotations

import argparse
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pyingress.auth.policy import OIDCClient
from pyingress.cli import StartupError

log = logging.getLogger("pyingress.auth")

DEFAULT_SCOPES = "openid email profile"
WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class OIDCSettings:
    """The process-wide login configuration (the ``--oidc-*`` flags).

    Defined here rather than beside the login code so that checking the flags at startup does
    not load the HTTP and JOSE libraries a process without logins never uses.
    """

    client: OIDCClient | None
    cookie_secret: bytes = field(repr=False)
    cookie_domain: str = ""
    redirect_url: str = ""
    scopes: str = "openid email profile"
    groups_claim: str = "groups"
    cookie_lifetime: int = WEEK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("login with OpenID Connect (annotation auth-oidc)")
    add = group.add_argument
    add("--oidc-issuer", metavar="URL", help="issuer URL of the OpenID Connect provider")
    add("--oidc-client-id", metavar="ID", help="client id registered at the provider")
    add("--oidc-client-secret-file", metavar="FILE", help="file holding the client secret")
    add("--oidc-cookie-secret-file", metavar="FILE",
        help="file holding at least 16 random bytes that encrypt the session cookies; "
             "needed with --workers > 1 and for sessions that survive restarts")  # fmt: skip
    add("--oidc-cookie-domain", default="", metavar="DOMAIN",
        help="parent domain for the session cookie (e.g. .homelab.example): one login for "
             "every subdomain")  # fmt: skip
    add("--oidc-redirect-url", default="", metavar="URL",
        help="callback URL registered at the provider (default: "
             "<scheme>://<requested host>/oauth2/callback)")  # fmt: skip
    add(
        "--oidc-scopes",
        default=DEFAULT_SCOPES,
        metavar="SCOPES",
        help="space-separated scopes to request (default: %(default)s)",
    )
    add(
        "--oidc-groups-claim",
        default="groups",
        metavar="CLAIM",
        help="ID token claim holding the user's groups (default: %(default)s)",
    )
    add(
        "--oidc-cookie-expire",
        type=int,
        default=WEEK,
        metavar="SECONDS",
        help="session cookie lifetime (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace) -> OIDCSettings:
    """Validated settings; raises StartupError naming the flag at fault."""
    issuer = getattr(args, "oidc_issuer", None)
    client = None
    if issuer:
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StartupError(f"--oidc-issuer: {issuer!r} is not an http(s) URL")
        if not args.oidc_client_id:
            raise StartupError("--oidc-issuer needs --oidc-client-id")
        if not args.oidc_client_secret_file:
            raise StartupError("--oidc-issuer needs --oidc-client-secret-file")
        secret = _read("--oidc-client-secret-file", args.oidc_client_secret_file).decode().strip()
        client = OIDCClient(issuer, args.oidc_client_id, secret)
    cookie_file = getattr(args, "oidc_cookie_secret_file", None)
    if cookie_file:
        cookie_secret = _read("--oidc-cookie-secret-file", cookie_file).strip()
        if len(cookie_secret) < 16:
            raise StartupError("--oidc-cookie-secret-file: needs at least 16 bytes")
    else:
        if client is not None and getattr(args, "workers", 1) > 1:
            raise StartupError("--workers > 1 with --oidc-issuer needs --oidc-cookie-secret-file")
        if client is not None:
            log.warning("no --oidc-cookie-secret-file: sessions end when the process restarts")
        cookie_secret = secrets.token_bytes(32)
    redirect = getattr(args, "oidc_redirect_url", "") or ""
    if redirect and urlsplit(redirect).scheme not in ("http", "https"):
        raise StartupError(f"--oidc-redirect-url: {redirect!r} is not an http(s) URL")
    expire = getattr(args, "oidc_cookie_expire", WEEK)
    if expire < 60:
        raise StartupError("--oidc-cookie-expire: at least 60 seconds")
    return OIDCSettings(
        client=client,
        cookie_secret=cookie_secret,
        cookie_domain=getattr(args, "oidc_cookie_domain", "") or "",
        redirect_url=redirect,
        scopes=getattr(args, "oidc_scopes", DEFAULT_SCOPES) or DEFAULT_SCOPES,
        groups_claim=getattr(args, "oidc_groups_claim", "groups") or "groups",
        cookie_lifetime=expire,
    )


def _read(flag: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StartupError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise StartupError(f"{flag}: {path} is empty")
    return data

"""Traffic policy: the typed form of the ingress-nginx routing, limit and upstream annotations.

Everything is parsed once, at compile time: sizes (``8k``, ``1m``), durations, CIDRs, codes,
regular expressions. The result is frozen and hashable so equal policies share one filter chain
(and its rate-limit state) across route-table reloads. A bad value raises
:class:`~pyingress.routing.annotations.AnnotationError` and the compiler skips that Ingress.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyingress.model import ObjectRef, Problem, Severity
from pyingress.routing.annotations import AnnotationError, Annotations, Network

if TYPE_CHECKING:
    from pyingress.routing.policy import PolicyContext
    from pyingress.routing.table import Backend

UNLIMITED = 0

DEFAULT_BODY_SIZE = UNLIMITED
"""No request-body limit unless an Ingress asks for one.

ingress-nginx defaults to 1m because nginx buffers request bodies to disk; pyingress streams
them to the backend with back-pressure, so a big upload costs the proxy nothing and the backend
enforces the limit it actually has. The 1m default is also the most reported surprise of
ingress-nginx users (uploads to Nextcloud, registries, Grafana dashboards failing with 413).
"""

DEFAULT_CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
DEFAULT_CORS_HEADERS = (
    "DNT",
    "Keep-Alive",
    "User-Agent",
    "X-Requested-With",
    "If-Modified-Since",
    "Cache-Control",
    "Content-Type",
    "Range",
    "Authorization",
)
DEFAULT_CORS_MAX_AGE = 1728000
REDIRECT_CODES = (300, 301, 302, 303, 304, 307, 308)
_SIZE_RE = re.compile(r"^(\d+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_ORIGIN_RE = re.compile(r"^(https?)://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*)(:\d{1,5})?$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HASH_VAR_RE = re.compile(r"\$(\w+)")
_HASH_VARIABLES = ("remote_addr", "binary_remote_addr", "request_uri", "uri", "host", "args")
_HASH_VARIABLE_PREFIXES = ("http_", "cookie_", "arg_")
_SAMESITE = ("None", "Lax", "Strict")


@dataclass(frozen=True, slots=True)
class Redirect:
    """``permanent-redirect`` / ``temporal-redirect``: answer with ``code`` and ``location``."""

    location: str
    code: int


@dataclass(frozen=True, slots=True)
class Rewrite:
    """``rewrite-target``: the path regex (the route's own path) and the replacement."""

    target: str


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: tuple[str, ...] = ("*",)
    """``*``, ``scheme://host[:port]`` origins, or one-level wildcards ``scheme://*.domain``."""
    allow_methods: tuple[str, ...] = DEFAULT_CORS_METHODS
    allow_headers: tuple[str, ...] = DEFAULT_CORS_HEADERS
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = True
    max_age: int = DEFAULT_CORS_MAX_AGE


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """Per client IP and per replica, like ingress-nginx's ``limit_req`` / ``limit_conn``."""

    rps: int = 0
    rpm: int = 0
    connections: int = 0
    burst_multiplier: int = 5
    allowlist: tuple[Network, ...] = ()
    status: int = 503


@dataclass(frozen=True, slots=True)
class AffinityPolicy:
    """``affinity: cookie``: sticky sessions keyed by a cookie naming the endpoint."""

    cookie_name: str = "INGRESSCOOKIE"
    mode: str = "balanced"
    path: str = ""
    """Empty: the route's path (ingress-nginx's default)."""
    domain: str = ""
    samesite: str = ""
    secure: bool = False
    max_age: int | None = None
    expires: int | None = None
    change_on_failure: bool = False
    conditional_samesite_none: bool = False


@dataclass(frozen=True, slots=True)
class CanaryRule:
    """How a canary Ingress diverts requests: header, then cookie, then weight."""

    by_header: str = ""
    by_header_value: str = ""
    by_header_pattern: re.Pattern[str] | None = None
    by_cookie: str = ""
    weight: int = 0
    weight_total: int = 100


@dataclass(frozen=True, slots=True)
class ProxySSL:
    """``backend-protocol: HTTPS`` and the ``proxy-ssl-*`` annotations."""

    verify: bool = False
    secret: ObjectRef | None = None
    name: str = ""
    """The name checked against the backend certificate; empty: the proxied host."""
    server_name: bool = False
    """``proxy-ssl-server-name``: send SNI to the backend."""
    ca_pem: bytes = field(default=b"", repr=False)
    """``ca.crt`` of the ``proxy-ssl-secret``: the CAs that verify the backend."""
    cert_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)
    """``tls.crt``/``tls.key`` of the ``proxy-ssl-secret``: the client certificate, if any."""


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """What the data plane reads directly when it talks to the backend."""

    body_size: int = DEFAULT_BODY_SIZE
    connect_timeout: float | None = None
    read_timeout: float | None = None
    send_timeout: float | None = None
    """None: the proxy's global setting."""
    next_upstream_tries: int = 3
    ssl: ProxySSL | None = None
    service_upstream: bool = False
    load_balance: str = "round_robin"
    hash_by: tuple[str, ...] = ()
    """``upstream-hash-by`` split into literal text and ``$variable`` parts."""
    affinity: AffinityPolicy | None = None


DEFAULT_UPSTREAM = UpstreamPolicy()


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """The traffic part of a :class:`~pyingress.routing.policy.RoutePolicy`."""

    redirect: Redirect | None = None
    app_root: str = ""
    from_to_www: bool = False
    preserve_trailing_slash: bool = False
    use_regex: bool = False
    rewrite: Rewrite | None = None
    x_forwarded_prefix: str = ""
    upstream_vhost: str = ""
    cors: CorsPolicy | None = None
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    limits: LimitPolicy | None = None
    upstream: UpstreamPolicy = DEFAULT_UPSTREAM
    canary: CanaryRule | None = None
    """Set on a canary Ingress's routes; the canary pass moves it onto the main route."""
    ssl_passthrough: bool = False
    split: CanarySplit | None = None
    """Set by the canary pass on a main route: the canary backend and its rule."""
    plain_upstream: bool = field(init=False, compare=False, repr=False)
    """True when a body-less request needs nothing of the traffic runtime: round-robin, plain
    HTTP and the proxy's own timeouts (the data plane's fast path)."""

    def __post_init__(self) -> None:
        upstream = self.upstream
        plain = (
            self.split is None
            and upstream.affinity is None
            and not upstream.hash_by
            and upstream.load_balance != "ewma"
            and upstream.ssl is None
            and upstream.connect_timeout is None
            and upstream.read_timeout is None
            and upstream.send_timeout is None
        )
        object.__setattr__(self, "plain_upstream", plain)

    @property
    def has_filters(self) -> bool:
        return bool(
            self.redirect
            or self.app_root
            or self.from_to_www
            or self.rewrite
            or self.x_forwarded_prefix
            or self.upstream_vhost
            or self.cors
            or self.response_headers
            or self.limits
        )


@dataclass(frozen=True, slots=True)
class CanarySplit:
    """A main route's canary: the rule and the canary Ingress's backend (a Backend)."""

    rule: CanaryRule
    backend: Backend
    ingress: ObjectRef


def parse_traffic(annotations: Annotations, context: PolicyContext) -> TrafficPolicy | None:
    """The traffic policy of one Ingress, or None when it uses none of these annotations."""
    policy = TrafficPolicy(
        redirect=_redirect(annotations),
        app_root=_app_root(annotations),
        from_to_www=annotations.boolean("from-to-www-redirect"),
        preserve_trailing_slash=annotations.boolean("preserve-trailing-slash"),
        use_regex=annotations.boolean("use-regex") or annotations.raw("rewrite-target") is not None,
        rewrite=_rewrite(annotations),
        x_forwarded_prefix=_header_value(annotations, "x-forwarded-prefix"),
        upstream_vhost=_vhost(annotations),
        cors=_cors(annotations),
        response_headers=_custom_headers(annotations, context),
        limits=_limits(annotations),
        upstream=_upstream(annotations, context),
        canary=_canary(annotations),
        ssl_passthrough=annotations.boolean("ssl-passthrough"),
    )
    return None if policy == TrafficPolicy() else policy


def parse_size(annotations: Annotations, name: str, default: int) -> int:
    """An nginx size: bytes, or a number with ``k``, ``m`` or ``g``; ``0`` means unlimited."""
    value = annotations.raw(name)
    if value is None:
        return default
    match = _SIZE_RE.match(value)
    if match is None:
        raise _error(annotations, name, value, "expected a size like 8k, 10m or 1g")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_duration(annotations: Annotations, name: str) -> float | None:
    """Seconds (ingress-nginx writes them without a unit); ``ms``, ``s``, ``m``, ``h`` allowed."""
    value = annotations.raw(name)
    if value is None:
        return None
    match = _DURATION_RE.match(value)
    if match is None:
        raise _error(annotations, name, value, "expected seconds, like 60 or 60s")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0 or seconds > 86400:
        raise _error(annotations, name, value, "expected a duration between 1ms and 24h")
    return seconds


def _redirect(annotations: Annotations) -> Redirect | None:
    for name, code in (("permanent-redirect", 301), ("temporal-redirect", 302)):
        location = annotations.raw(name)
        if location:
            _check_url(annotations, name, location, allow_relative=False)
            return Redirect(location, _redirect_code(annotations, f"{name}-code", code))
    return None


def _redirect_code(annotations: Annotations, name: str, default: int) -> int:
    code = annotations.integer(name, default, 300, 308)
    if code not in REDIRECT_CODES:
        raise _error(annotations, name, str(code), "expected a redirect status (301, 302, 307...)")
    return code


def _app_root(annotations: Annotations) -> str:
    value = annotations.text("app-root")
    if value:
        _check_url(annotations, "app-root", value, allow_relative=True)
        if not value.startswith("/") or value.startswith("//"):
            raise _error(annotations, "app-root", value, "expected a path beginning with '/'")
    return value


def _check_url(annotations: Annotations, name: str, value: str, allow_relative: bool) -> None:
    """Locations go out verbatim in a header: no spaces or control characters, a safe scheme."""
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        raise _error(annotations, name, value, "must not contain spaces or control characters")
    if allow_relative and value.startswith("/"):
        return
    if not value.lower().startswith(("http://", "https://")):
        raise _error(annotations, name, value, "expected an http:// or https:// URL")


def _rewrite(annotations: Annotations) -> Rewrite | None:
    target = annotations.raw("rewrite-target")
    if target is None:
        return None
    if not target.startswith("/") or any(ord(char) < 0x21 for char in target):
        raise _error(annotations, "rewrite-target", target, "expected a path beginning with '/'")
    for group in re.findall(r"\$(\d+)", target):
        if int(group) > 9:
            raise _error(annotations, "rewrite-target", target, "groups go from $1 to $9")
    return Rewrite(target)


def _header_value(annotations: Annotations, name: str) -> str:
    value = annotations.text(name)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise _error(annotations, name, value, "must not contain control characters")
    return value


def _vhost(annotations: Annotations) -> str:
    value = _header_value(annotations, "upstream-vhost")
    if value and not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?$", value):
        raise _error(annotations, "upstream-vhost", value, "expected a host name, maybe with :port")
    return value


def _cors(annotations: Annotations) -> CorsPolicy | None:
    if not annotations.boolean("enable-cors"):
        return None
    defaults = CorsPolicy()
    origins = annotations.words("cors-allow-origin") or defaults.allow_origins
    for origin in origins:
        if origin != "*" and not _ORIGIN_RE.match(origin.lower()):
            raise _error(
                annotations,
                "cors-allow-origin",
                origin,
                "expected * or scheme://host[:port] (one *. allowed)",
            )
    methods = tuple(m.upper() for m in annotations.words("cors-allow-methods"))
    for method in methods:
        if not method.isalpha():
            raise _error(annotations, "cors-allow-methods", method, "expected HTTP method names")
    return CorsPolicy(
        allow_origins=tuple(origin.lower() if origin != "*" else origin for origin in origins),
        allow_methods=methods or defaults.allow_methods,
        allow_headers=_header_names(annotations, "cors-allow-headers") or defaults.allow_headers,
        expose_headers=_header_names(annotations, "cors-expose-headers"),
        allow_credentials=annotations.boolean("cors-allow-credentials", True),
        max_age=annotations.integer("cors-max-age", DEFAULT_CORS_MAX_AGE),
    )


def _header_names(annotations: Annotations, name: str) -> tuple[str, ...]:
    names = annotations.words(name)
    for header in names:
        if header != "*" and not _HEADER_NAME_RE.match(header):
            raise _error(annotations, name, header, "expected header names")
    return names


def _custom_headers(
    annotations: Annotations, context: PolicyContext
) -> tuple[tuple[bytes, bytes], ...]:
    """Response headers from the ConfigMap ``custom-headers`` names (``ns/name`` or ``name``)."""
    value = annotations.raw("custom-headers")
    if not value:
        return ()
    namespace, _, name = value.rpartition("/")
    namespace = namespace or context.ingress.namespace
    config_map = context.snapshot.get("ConfigMap", namespace, name)
    if config_map is None:
        context.problems.append(
            Problem(
                context.ingress,
                "ConfigMapNotFound",
                f"custom-headers ConfigMap {namespace}/{name} does not exist; "
                "no custom headers are added",
                Severity.WARNING,
            )
        )
        return ()
    headers = []
    for key, raw in sorted((config_map.get("data") or {}).items()):
        text = str(raw)
        if not _HEADER_NAME_RE.match(key) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            context.problems.append(
                Problem(
                    context.ingress,
                    "InvalidHeader",
                    f"custom-headers ConfigMap {namespace}/{name}: header {key!r} has an invalid "
                    "name or value; it is not added",
                    Severity.WARNING,
                )
            )
            continue
        headers.append((key.encode("latin-1"), text.encode("latin-1", "replace")))
    return tuple(headers)


def _limits(annotations: Annotations) -> LimitPolicy | None:
    rps = annotations.integer("limit-rps", 0)
    rpm = annotations.integer("limit-rpm", 0)
    connections = annotations.integer("limit-connections", 0)
    if not (rps or rpm or connections):
        return None
    allowlist = annotations.networks("limit-allowlist") or annotations.networks("limit-whitelist")
    return LimitPolicy(
        rps=rps,
        rpm=rpm,
        connections=connections,
        burst_multiplier=annotations.integer("limit-burst-multiplier", 5, minimum=1),
        allowlist=allowlist,
        status=annotations.integer("limit-req-status-code", 503, 400, 599),
    )


def _upstream(annotations: Annotations, context: PolicyContext) -> UpstreamPolicy:
    hash_by = _hash_by(annotations)
    load_balance = annotations.choice("load-balance", ("round_robin", "ewma"), "round_robin")
    return UpstreamPolicy(
        body_size=parse_size(annotations, "proxy-body-size", DEFAULT_BODY_SIZE),
        connect_timeout=parse_duration(annotations, "proxy-connect-timeout"),
        read_timeout=parse_duration(annotations, "proxy-read-timeout"),
        send_timeout=parse_duration(annotations, "proxy-send-timeout"),
        next_upstream_tries=annotations.integer("proxy-next-upstream-tries", 3, 0, 100),
        ssl=_proxy_ssl(annotations, context),
        service_upstream=annotations.boolean("service-upstream"),
        load_balance=load_balance,
        hash_by=hash_by,
        affinity=_affinity(annotations),
    )


def _proxy_ssl(annotations: Annotations, context: PolicyContext) -> ProxySSL | None:
    protocol = (annotations.raw("backend-protocol") or "HTTP").upper()
    if protocol in ("GRPC", "GRPCS", "FCGI", "AUTO_HTTP"):
        raise _error(
            annotations, "backend-protocol", protocol, "only HTTP and HTTPS backends are supported"
        )
    if protocol not in ("HTTP", "HTTPS"):
        raise _error(annotations, "backend-protocol", protocol, "expected HTTP or HTTPS")
    if protocol == "HTTP":
        return None
    secret = None
    material: dict[str, bytes] = {}
    raw_secret = annotations.raw("proxy-ssl-secret")
    if raw_secret:
        namespace, _, name = raw_secret.rpartition("/")
        secret = ObjectRef("Secret", namespace or context.ingress.namespace, name)
        material = _secret_material(secret, context)
    name = annotations.text("proxy-ssl-name")
    if name and not re.match(r"^[A-Za-z0-9.*-]+$", name):
        raise _error(annotations, "proxy-ssl-name", name, "expected a host name")
    return ProxySSL(
        verify=annotations.boolean("proxy-ssl-verify"),
        secret=secret,
        name=name,
        server_name=annotations.boolean("proxy-ssl-server-name"),
        ca_pem=material.get("ca.crt", b""),
        cert_pem=material.get("tls.crt", b""),
        key_pem=material.get("tls.key", b""),
    )


def _secret_material(secret: ObjectRef, context: PolicyContext) -> dict[str, bytes]:
    """The PEM values of a Secret (``data`` is base64, ``stringData`` plain); problems noted."""
    found = context.snapshot.get("Secret", secret.namespace, secret.name)
    if found is None:
        context.problems.append(
            Problem(
                context.ingress,
                "SecretNotFound",
                f"proxy-ssl-secret {secret.namespaced_name} does not exist",
                Severity.WARNING,
            )
        )
        return {}
    values: dict[str, bytes] = {}
    for key, value in (found.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            context.problems.append(
                Problem(
                    context.ingress,
                    "InvalidSecret",
                    f"proxy-ssl-secret {secret.namespaced_name}: data[{key!r}] is not base64",
                    Severity.WARNING,
                )
            )
    for key, value in (found.get("stringData") or {}).items():
        values[key] = str(value).encode()
    return values


def _hash_by(annotations: Annotations) -> tuple[str, ...]:
    """``upstream-hash-by`` as parts: ``$name`` variables we know, and literal text."""
    value = annotations.raw("upstream-hash-by")
    if not value:
        return ()
    parts: list[str] = []
    position = 0
    for match in _HASH_VAR_RE.finditer(value):
        if match.start() > position:
            parts.append(value[position : match.start()])
        variable = match.group(1)
        if variable not in _HASH_VARIABLES and not variable.startswith(_HASH_VARIABLE_PREFIXES):
            raise _error(
                annotations,
                "upstream-hash-by",
                value,
                f"${variable} is not supported; use $remote_addr, $request_uri, $uri, $host, "
                "$args, $http_<name>, $cookie_<name> or $arg_<name>",
            )
        parts.append("$" + variable.lower())
        position = match.end()
    if position < len(value):
        parts.append(value[position:])
    if not any(part.startswith("$") for part in parts):
        raise _error(annotations, "upstream-hash-by", value, "expected at least one $variable")
    return tuple(parts)


def _affinity(annotations: Annotations) -> AffinityPolicy | None:
    kind = annotations.raw("affinity")
    if not kind:
        return None
    if kind != "cookie":
        raise _error(annotations, "affinity", kind, 'expected "cookie"')
    name = annotations.text("session-cookie-name", "INGRESSCOOKIE")
    if not _HEADER_NAME_RE.match(name):
        raise _error(annotations, "session-cookie-name", name, "expected a cookie name")
    samesite = annotations.text("session-cookie-samesite")
    if samesite and samesite.capitalize() not in _SAMESITE:
        raise _error(
            annotations, "session-cookie-samesite", samesite, "expected None, Lax or Strict"
        )
    path = annotations.text("session-cookie-path")
    if path and (not path.startswith("/") or any(c in path for c in ";, \t")):
        raise _error(annotations, "session-cookie-path", path, "expected a plain path")
    domain = annotations.text("session-cookie-domain")
    if domain and not re.match(r"^\.?[A-Za-z0-9.-]+$", domain):
        raise _error(annotations, "session-cookie-domain", domain, "expected a domain")
    max_age = annotations.raw("session-cookie-max-age")
    expires = annotations.raw("session-cookie-expires")
    return AffinityPolicy(
        cookie_name=name,
        mode=annotations.choice("affinity-mode", ("balanced", "persistent"), "balanced"),
        path=path,
        domain=domain,
        samesite=samesite.capitalize(),
        secure=annotations.boolean("session-cookie-secure"),
        max_age=None if max_age is None else annotations.integer("session-cookie-max-age", 0),
        expires=None if expires is None else annotations.integer("session-cookie-expires", 0),
        change_on_failure=annotations.boolean("session-cookie-change-on-failure"),
        conditional_samesite_none=annotations.boolean("session-cookie-conditional-samesite-none"),
    )


def _canary(annotations: Annotations) -> CanaryRule | None:
    if not annotations.boolean("canary"):
        return None
    pattern_text = annotations.raw("canary-by-header-pattern")
    pattern = None
    if pattern_text:
        try:
            pattern = re.compile(pattern_text)
        except re.error as exc:
            raise _error(
                annotations,
                "canary-by-header-pattern",
                pattern_text,
                f"invalid regular expression: {exc}",
            ) from None
    total = annotations.integer("canary-weight-total", 100, minimum=1)
    header = annotations.text("canary-by-header")
    if header and not _HEADER_NAME_RE.match(header):
        raise _error(annotations, "canary-by-header", header, "expected a header name")
    return CanaryRule(
        by_header=header.lower(),
        by_header_value=annotations.text("canary-by-header-value"),
        by_header_pattern=pattern,
        by_cookie=annotations.text("canary-by-cookie"),
        weight=annotations.integer("canary-weight", 0, 0, total),
        weight_total=total,
    )


def _error(annotations: Annotations, name: str, value: str, rule: str) -> AnnotationError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return AnnotationError(f"annotation {annotations.key_of(name) or name}={shown!r}: {rule}")

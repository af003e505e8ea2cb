"""Every ingress-nginx annotation, with pyingress's verdict and what differs.

The verdicts drive ``pyingress check``'s migration report: an Ingress carrying an annotation
that is unsupported, or supported in a way that changes what clients see, makes the check fail,
so a migration never silently changes behaviour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    SUPPORTED = "supported"
    DIFFERENT = "supported-with-differences"
    IGNORED = "ignored"
    """Not needed by pyingress's design; ignoring it changes nothing clients see."""
    REFUSED = "refused"
    """Raw configuration (snippets): never accepted; the Ingress is not served."""
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"
    """Not an annotation pyingress knows (a typo, or one from a newer ingress-nginx)."""


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    verdict: Verdict
    note: str = ""
    changes_behaviour: bool = False
    """For DIFFERENT entries: whether the difference is visible to clients."""

    @property
    def blocking(self) -> bool:
        """Whether a migration with this annotation would change behaviour."""
        if self.verdict in (Verdict.UNSUPPORTED, Verdict.REFUSED, Verdict.UNKNOWN):
            return True
        return self.verdict is Verdict.DIFFERENT and self.changes_behaviour


S, D, N, R, U = (
    Verdict.SUPPORTED,
    Verdict.DIFFERENT,
    Verdict.IGNORED,
    Verdict.REFUSED,
    Verdict.UNSUPPORTED,
)
_SNIPPET = (
    "raw nginx configuration is never accepted (the Ingress is refused): use typed annotations"
)

_ENTRIES: tuple[Entry, ...] = (
    # Authentication (pyingress/auth)
    Entry("auth-type", D, "basic only; digest is not supported", changes_behaviour=False),
    Entry("auth-secret", S),
    Entry("auth-secret-type", S, "auth-file and auth-map"),
    Entry("auth-realm", S),
    Entry("auth-url", S, "oauth2-proxy compatible external auth"),
    Entry("auth-signin", S),
    Entry("auth-signin-redirect-param", S),
    Entry("auth-response-headers", S),
    Entry("auth-method", S),
    Entry("auth-request-redirect", U, "the X-Auth-Request-Redirect value cannot be overridden"),
    Entry("auth-proxy-set-headers", U, "extra headers for the auth sub-request are not sent"),
    Entry("auth-always-set-cookie", U, "auth-service cookies are only passed on success"),
    Entry("auth-cache-key", D, "auth verdicts are not cached; every request asks the service"),
    Entry("auth-cache-duration", D, "auth verdicts are not cached"),
    Entry("auth-keepalive", N, "the auth client always pools connections"),
    Entry("auth-keepalive-share-vars", N, "no nginx variables"),
    Entry("auth-keepalive-requests", N, "the auth client always pools connections"),
    Entry("auth-keepalive-timeout", N, "the auth client always pools connections"),
    Entry("auth-snippet", R, _SNIPPET),
    Entry("enable-global-auth", N, "there is no global auth-url"),
    Entry("satisfy", S, "any or all, with the source-range allow-list"),
    Entry("auth-tls-secret", U, "client-certificate (mTLS) auth is not implemented"),
    Entry("auth-tls-verify-client", U, "client-certificate (mTLS) auth is not implemented"),
    Entry("auth-tls-verify-depth", U, "client-certificate (mTLS) auth is not implemented"),
    Entry("auth-tls-pass-certificate-to-upstream", U, "mTLS is not implemented"),
    Entry("auth-tls-match-cn", U, "mTLS is not implemented"),
    Entry("auth-tls-error-page", U, "mTLS is not implemented"),
    Entry("whitelist-source-range", S, "403 for other clients"),
    Entry("allowlist-source-range", S, "403 for other clients"),
    Entry("denylist-source-range", U, "deny-lists are not implemented"),
    # HTTPS enforcement and redirects
    Entry("ssl-redirect", S, "308 for hosts under tls:"),
    Entry("force-ssl-redirect", S),
    Entry(
        "preserve-trailing-slash",
        S,
        "redirects always keep the request URI as sent, trailing slash included",
    ),
    Entry(
        "ssl-passthrough",
        D,
        "routed by SNI on the HTTPS port to ready endpoints, round-robin (the ClusterIP only "
        "with service-upstream); needs --enable-ssl-passthrough, as in ingress-nginx",
    ),
    Entry(
        "from-to-www-redirect",
        D,
        "308 to the rule host; the other name is served only if no Ingress uses it",
    ),
    Entry("permanent-redirect", S, "the URL is sent as written (no nginx variables)"),
    Entry("permanent-redirect-code", S),
    Entry("temporal-redirect", S, "the URL is sent as written (no nginx variables)"),
    Entry("temporal-redirect-code", S),
    Entry("app-root", S, "302 for / to the given path"),
    # Routing, rewriting, backends
    Entry(
        "rewrite-target",
        D,
        "Python regular expressions instead of PCRE (same for common patterns); "
        "groups $1-$9; regex locations for the whole host as in nginx",
    ),
    Entry(
        "use-regex",
        D,
        "Python regular expressions, case-insensitive and anchored; paths of other Ingresses "
        "on the host keep element-wise Prefix meaning instead of becoming regexes",
    ),
    Entry("x-forwarded-prefix", S),
    Entry("upstream-vhost", S),
    Entry("server-alias", U, "extra server names are not served; add the hosts as rules"),
    Entry("default-backend", U, "503 is answered when a Service has no endpoints"),
    Entry("custom-http-errors", U, "upstream error pages are passed through unchanged"),
    Entry(
        "backend-protocol",
        D,
        "HTTP and HTTPS; GRPC, GRPCS, FCGI and AUTO_HTTP are refused",
        changes_behaviour=False,
    ),
    Entry("proxy-ssl-secret", S, "client certificate and CA for HTTPS backends"),
    Entry("proxy-ssl-verify", S, "off by default, as in ingress-nginx"),
    Entry("proxy-ssl-name", S),
    Entry("proxy-ssl-server-name", S),
    Entry("proxy-ssl-protocols", N, "TLS 1.2+ from Python's ssl defaults"),
    Entry("proxy-ssl-ciphers", N, "Python's ssl default ciphers"),
    Entry("proxy-ssl-verify-depth", N, "OpenSSL's default depth"),
    Entry("service-upstream", S, "one endpoint: the ClusterIP and service port"),
    Entry("load-balance", S, "round_robin (default) or ewma"),
    Entry(
        "upstream-hash-by",
        D,
        "variables: $remote_addr, $request_uri, $uri, $host, $args, "
        "$http_*, $cookie_*, $arg_*; others are refused",
    ),
    Entry("upstream-hash-by-subset", U, "subset hashing is not implemented"),
    Entry("upstream-hash-by-subset-size", U, "subset hashing is not implemented"),
    Entry("affinity", S, "cookie"),
    Entry(
        "affinity-mode",
        D,
        "balanced and persistent behave the same: a client stays while its endpoint exists",
    ),
    Entry("affinity-canary-behavior", U, "canary choice ignores the affinity cookie"),
    Entry("session-cookie-name", S, "default INGRESSCOOKIE"),
    Entry("session-cookie-path", S),
    Entry("session-cookie-domain", S),
    Entry("session-cookie-samesite", S),
    Entry("session-cookie-secure", S),
    Entry("session-cookie-max-age", S),
    Entry("session-cookie-expires", S),
    Entry(
        "session-cookie-change-on-failure",
        D,
        "a failed endpoint is retried elsewhere, the "
        "cookie is re-issued only when the endpoint is gone",
    ),
    Entry("session-cookie-conditional-samesite-none", S),
    Entry("canary", S, "attached to the main Ingress of the same host and path"),
    Entry("canary-by-header", S),
    Entry("canary-by-header-value", S),
    Entry("canary-by-header-pattern", D, "Python regular expression"),
    Entry("canary-by-cookie", S),
    Entry("canary-weight", S),
    Entry("canary-weight-total", S),
    Entry("mirror-target", U, "request mirroring is not implemented"),
    Entry("mirror-host", U, "request mirroring is not implemented"),
    Entry("mirror-request-body", U, "request mirroring is not implemented"),
    # Limits, timeouts, buffering
    Entry(
        "proxy-body-size",
        S,
        "413 up front and mid-stream; without it pyingress has no limit (ingress-nginx: 1m)",
    ),
    Entry("client-body-buffer-size", N, "bodies are streamed, never buffered"),
    Entry("proxy-connect-timeout", S),
    Entry("proxy-send-timeout", S),
    Entry("proxy-read-timeout", S),
    Entry("proxy-next-upstream", D, "always 'error timeout' before any byte was sent"),
    Entry("proxy-next-upstream-tries", S),
    Entry("proxy-next-upstream-timeout", U, "no overall retry deadline"),
    Entry("proxy-request-buffering", N, "bodies are always streamed"),
    Entry("proxy-buffering", N, "responses are always streamed"),
    Entry("proxy-buffer-size", N, "headers up to 32 KiB are accepted"),
    Entry("proxy-buffers-number", N, "responses are streamed"),
    Entry("proxy-busy-buffers-size", N, "responses are streamed"),
    Entry("proxy-max-temp-file-size", N, "nothing is buffered to disk"),
    Entry("proxy-http-version", N, "HTTP/1.1 to backends"),
    Entry("connection-proxy-header", U, "the Connection header is managed by the proxy"),
    Entry("proxy-redirect-from", U, "Location headers are passed through unchanged"),
    Entry("proxy-redirect-to", U, "Location headers are passed through unchanged"),
    Entry("proxy-cookie-domain", U, "Set-Cookie is passed through unchanged"),
    Entry("proxy-cookie-path", U, "Set-Cookie is passed through unchanged"),
    Entry(
        "limit-rps",
        D,
        "503 with a Retry-After header; token bucket per client IP",
        changes_behaviour=False,
    ),
    Entry(
        "limit-rpm",
        D,
        "503 with a Retry-After header; token bucket per client IP",
        changes_behaviour=False,
    ),
    Entry("limit-burst-multiplier", S),
    Entry(
        "limit-connections",
        D,
        "counts requests waiting for response headers per client IP; "
        "WebSockets are not counted once upgraded",
    ),
    Entry("limit-rate", U, "response bandwidth is not limited"),
    Entry("limit-rate-after", U, "response bandwidth is not limited"),
    Entry("limit-allowlist", S),
    Entry("limit-whitelist", S),
    Entry("limit-req-status-code", S),
    # CORS, headers, logging
    Entry("enable-cors", S),
    Entry("cors-allow-origin", S, "lists and one-level *. wildcards"),
    Entry("cors-allow-methods", S),
    Entry("cors-allow-headers", S),
    Entry("cors-expose-headers", S),
    Entry("cors-allow-credentials", S),
    Entry("cors-max-age", S),
    Entry(
        "custom-headers",
        D,
        "response headers from the ConfigMap; no global-allowed-response-headers check",
    ),
    Entry("enable-access-log", N, "access logging is a process setting"),
    Entry("enable-rewrite-log", N, "no nginx rewrite log"),
    Entry("enable-opentelemetry", U, "tracing is not implemented"),
    Entry("opentelemetry-trust-incoming-span", U, "tracing is not implemented"),
    Entry("enable-modsecurity", U, "no web application firewall"),
    Entry("enable-owasp-core-rules", U, "no web application firewall"),
    Entry("modsecurity-transaction-id", U, "no web application firewall"),
    Entry("modsecurity-snippet", R, _SNIPPET),
    Entry("configuration-snippet", R, _SNIPPET),
    Entry("server-snippet", R, _SNIPPET),
    Entry("stream-snippet", R, _SNIPPET),
)

CATALOGUE: dict[str, Entry] = {entry.name: entry for entry in _ENTRIES}


def lookup(name: str) -> Entry:
    """The entry for an annotation name (without prefix); unknown names get UNKNOWN."""
    entry = CATALOGUE.get(name)
    if entry is not None:
        return entry
    if name.endswith("-snippet"):
        return Entry(name, Verdict.REFUSED, _SNIPPET)
    return Entry(name, Verdict.UNKNOWN, "not an annotation pyingress knows; it has no effect")

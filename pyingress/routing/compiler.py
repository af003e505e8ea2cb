"""Objects in, an immutable route table and a list of problems out. Pure: no I/O.

This is where the Kubernetes Ingress v1 semantics live (see ``RouteTable`` for the lookup side):

- only Ingresses of our IngressClass are compiled (:mod:`pyingress.routing.classes`);
- Ingresses are applied oldest first (creationTimestamp, then namespace/name), so on a conflict
  (same host, path and match kind) the oldest keeps the path and the newer one gets a warning;
- an Ingress that is invalid as a whole (bad host, path or pathType, refused or bad annotation)
  is reported and skipped; the others still compile;
- a path whose Service or port is missing still routes, to a 503 that names the cause, so it
  never silently falls through to a shorter path of another application.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pyingress.model import KubeObject, ObjectRef, Problem, Severity, Snapshot, ref_of
from pyingress.routing.annotations import AnnotationError, Annotations, refused_snippets
from pyingress.routing.backends import BackendError, BackendResolver
from pyingress.routing.classes import our_classes, owns_ingress
from pyingress.routing.policy import PolicyContext, RoutePolicy, parse_policy
from pyingress.routing.table import (
    Backend,
    HostRoutes,
    PathType,
    Route,
    RouteTable,
    TLSHost,
)
from pyingress.tls.policy import wants_builtin_acme
from pyingress.traffic.passes import TrafficPass


@dataclass(frozen=True, slots=True)
class CompileOptions:
    ingress_class: str = "pyingress"
    controller_name: str = "pyingress.io/ingress-controller"
    watch_ingress_without_class: bool = False
    namespace: str | None = None
    """Only compile Ingresses of this namespace (None: all)."""
    ssl_passthrough: bool = False
    """``serve --enable-ssl-passthrough``; without it ``ssl-passthrough`` is a warning."""


@dataclass(slots=True)
class CompileResult:
    table: RouteTable
    problems: list[Problem] = field(default_factory=list)


def compile_routes(snapshot: Snapshot, options: CompileOptions = CompileOptions()) -> CompileResult:
    """Compile every Ingress we own in ``snapshot`` into a :class:`RouteTable`."""
    return _Compiler(snapshot, options).run()


class IngressError(ValueError):
    """The Ingress cannot be served at all; ``reason`` is the problem's CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_BAD_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_BAD_PATH_SUFFIXES = ("/..", "/.")
_PATH_TYPES = {
    t.value: t for t in (PathType.EXACT, PathType.PREFIX, PathType.IMPLEMENTATION_SPECIFIC)
}


def parse_host(raw: str) -> str:
    """A rule host, normalised (lower case, no trailing dot); raises IngressError if invalid."""
    host = raw.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if ":" in host:
        raise IngressError("InvalidHost", f"host {raw!r} must not carry a port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise IngressError("InvalidHost", f"host {raw!r} is an IP address; use a DNS name")
    if len(host) > 253 or not _HOST_RE.match(host):
        raise IngressError(
            "InvalidHost",
            f"host {raw!r} is not a DNS name (a '*.' wildcard may only replace the first label)",
        )
    return host


def parse_path(raw_path: Any, raw_type: Any) -> tuple[str, PathType]:
    """A rule path and its type, validated as the API server validates them."""
    if raw_type not in _PATH_TYPES:
        shown = "missing" if raw_type is None else repr(raw_type)
        raise IngressError(
            "InvalidPathType",
            f"pathType is {shown}; expected Exact, Prefix or ImplementationSpecific",
        )
    path_type = _PATH_TYPES[raw_type]
    path = "" if raw_path is None else str(raw_path)
    if path_type is PathType.IMPLEMENTATION_SPECIFIC and path == "":
        path = "/"
    if not path.startswith("/"):
        raise IngressError("InvalidPath", f"path {path!r} must begin with '/'")
    strict = path_type is not PathType.IMPLEMENTATION_SPECIFIC
    if strict and (
        any(bad in path for bad in _BAD_PATH_SEQUENCES) or path.endswith(_BAD_PATH_SUFFIXES)
    ):
        raise IngressError(
            "InvalidPath",
            f"path {path!r} must not contain '//', '/./', '/../' or '%2f', "
            "nor end with '/.' or '/..'",
        )
    if "%" in path:
        path = unquote(path)
    return path, path_type


@dataclass(slots=True)
class _ParsedIngress:
    ref: ObjectRef
    routes: list[Route] = field(default_factory=list)
    default: Route | None = None
    hosts: list[str] = field(default_factory=list)
    tls: list[TLSHost] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Compiler:
    def __init__(self, snapshot: Snapshot, options: CompileOptions) -> None:
        self.snapshot = snapshot
        self.options = options
        self.resolver = BackendResolver(snapshot)
        self.table = RouteTable()
        self.problems: list[Problem] = []
        self.catch_all: Route | None = None

    def run(self) -> CompileResult:
        classes = our_classes(self.snapshot.of_kind("IngressClass"), self.options)
        ingresses = [
            ingress
            for ingress in self.snapshot.of_kind("Ingress")
            if self._in_scope(ingress) and owns_ingress(ingress, classes, self.options)
        ]
        ingresses.sort(key=_age)
        traffic = TrafficPass(self.snapshot, self.options.ssl_passthrough)
        for ingress in ingresses:
            ref = ref_of(ingress, "Ingress")
            try:
                parsed = self._parse(ref, ingress)
            except IngressError as exc:
                self.problems.append(Problem(ref, exc.reason, str(exc)))
                continue
            self.problems.extend(parsed.problems)
            parsed.routes = traffic.take(parsed.routes)
            self._apply(parsed)
        self._finish()
        self.problems.extend(traffic.finish(self.table))
        return CompileResult(self.table, self.problems)

    def _in_scope(self, ingress: KubeObject) -> bool:
        if self.options.namespace is None:
            return True
        return bool((ingress.get("metadata") or {}).get("namespace") == self.options.namespace)

    def _parse(self, ref: ObjectRef, ingress: KubeObject) -> _ParsedIngress:
        annotations = Annotations((ingress.get("metadata") or {}).get("annotations"))
        snippets = refused_snippets(annotations)
        if snippets:
            raise IngressError(
                "SnippetRefused",
                f"{', '.join(snippets)}: raw configuration snippets are never accepted, because "
                "anyone who can write an Ingress could then run code in the controller; "
                "use the typed annotations instead (pyingress check lists them)",
            )
        parsed = _ParsedIngress(ref)
        try:
            policy = parse_policy(annotations, PolicyContext(ref, self.snapshot, parsed.problems))
        except AnnotationError as exc:
            raise IngressError("InvalidAnnotation", str(exc)) from None
        spec = ingress.get("spec") or {}
        if spec.get("defaultBackend"):
            backend = self._backend(ref, spec["defaultBackend"], parsed)
            parsed.default = Route(ref, "", "", PathType.DEFAULT, backend, policy)
        for rule in spec.get("rules") or []:
            host = parse_host(rule["host"]) if rule.get("host") else ""
            parsed.hosts.append(host)
            for item in (rule.get("http") or {}).get("paths") or []:
                path, path_type = parse_path(item.get("path"), item.get("pathType"))
                backend = self._backend(ref, item.get("backend"), parsed)
                parsed.routes.append(Route(ref, host, path, path_type, backend, policy))
        if not spec.get("rules") and parsed.default is None:
            raise IngressError("NoRules", "the Ingress has neither rules nor a defaultBackend")
        self._parse_tls(ref, ingress, spec, parsed)
        return parsed

    def _backend(self, ref: ObjectRef, raw: Any, parsed: _ParsedIngress) -> Backend:
        if not isinstance(raw, dict):
            raise IngressError("InvalidBackend", "a path has no backend")
        service, resource = raw.get("service"), raw.get("resource")
        if resource and not service:
            kind = resource.get("kind", "?") if isinstance(resource, dict) else "?"
            parsed.problems.append(
                Problem(
                    ref,
                    "ResourceBackendUnsupported",
                    f"resource backends ({kind}) are not supported; requests get 503",
                    Severity.WARNING,
                )
            )
            return Backend(
                f"{ref.namespace}/resource:{kind}", (), "resource backends are not supported"
            )
        if not isinstance(service, dict) or not service.get("name") or resource:
            raise IngressError(
                "InvalidBackend", "a backend needs exactly one of service (with a name) or resource"
            )
        port = service.get("port") or {}
        number, name = port.get("number"), port.get("name")
        if bool(number) == bool(name):
            raise IngressError(
                "InvalidBackend",
                f"backend service {service['name']!r} needs one of port.number or port.name",
            )
        if number is not None and not (isinstance(number, int) and 0 < number < 65536):
            raise IngressError("InvalidBackend", f"service port {number!r} is not in 1-65535")
        try:
            return self.resolver.resolve(ref.namespace, str(service["name"]), port)
        except BackendError as exc:
            parsed.problems.append(Problem(ref, exc.reason, f"{exc}; requests get 503"))
            label = f"{ref.namespace}/{service['name']}:{number or name}"
            return Backend(label, (), str(exc).lower())

    def _parse_tls(
        self, ref: ObjectRef, ingress: KubeObject, spec: dict[str, Any], parsed: _ParsedIngress
    ) -> None:
        """TLS hosts of one Ingress; an entry without ``hosts`` covers the rule hosts left over."""
        entries = sorted(spec.get("tls") or [], key=lambda entry: not entry.get("hosts"))
        issued_here = wants_builtin_acme((ingress.get("metadata") or {}).get("annotations") or {})
        covered: dict[str, TLSHost] = {}
        for entry in entries:
            secret = self._tls_secret(ref, entry.get("secretName"), parsed, issued_here)
            listed = [parse_host(host) for host in entry.get("hosts") or []]
            hosts = listed or [host for host in parsed.hosts if host and host not in covered]
            for host in hosts:
                covered.setdefault(host, TLSHost(host, secret, ref))
        parsed.tls = list(covered.values())

    def _tls_secret(
        self, ref: ObjectRef, secret_name: str | None, parsed: _ParsedIngress, issued_here: bool
    ) -> ObjectRef | None:
        """The Secret a ``tls:`` entry names; missing is a warning unless built-in ACME makes it."""
        if not secret_name:
            return None
        secret = ObjectRef("Secret", ref.namespace, secret_name)
        if not issued_here and self.snapshot.get("Secret", ref.namespace, secret_name) is None:
            parsed.problems.append(
                Problem(
                    ref,
                    "SecretNotFound",
                    f"TLS Secret {secret.namespaced_name} does not exist; "
                    "the default certificate is served",
                    Severity.WARNING,
                )
            )
        return secret

    def _apply(self, parsed: _ParsedIngress) -> None:
        self.table.served.add(parsed.ref)
        for route in parsed.routes:
            winner = self._host_routes(route.host).add(route)
            if winner is not None:
                self._conflict(
                    route, winner, f"{route.host or '*'}{route.path} ({route.path_type.value})"
                )
        if parsed.default is not None:
            self._apply_default(parsed)
        for tls_host in parsed.tls:
            existing = self.table.tls_hosts.setdefault(tls_host.host, tls_host)
            if existing is not tls_host and existing.secret != tls_host.secret:
                self.problems.append(
                    Problem(
                        parsed.ref,
                        "TLSConflict",
                        f"TLS for {tls_host.host} is already set by older Ingress "
                        f"{existing.ingress.namespaced_name}; this tls entry is ignored",
                        Severity.WARNING,
                    )
                )

    def _apply_default(self, parsed: _ParsedIngress) -> None:
        default = parsed.default
        assert default is not None
        if not parsed.hosts:
            if self.catch_all is None:
                self.catch_all = default
            else:
                self._conflict(default, self.catch_all, "the cluster-wide default backend")
            return
        for host in dict.fromkeys(parsed.hosts):
            routes = self._host_routes(host)
            if routes.default is None:
                routes.default = Route(
                    default.ingress, host, "", PathType.DEFAULT, default.backend, default.policy
                )
            else:
                self._conflict(default, routes.default, f"the default backend of {host or '*'}")

    def _conflict(self, loser: Route, winner: Route, what: str) -> None:
        self.problems.append(
            Problem(
                loser.ingress,
                "RouteConflict",
                f"{what} is already served by older Ingress {winner.ingress_name}; "
                "this rule is ignored",
                Severity.WARNING,
            )
        )

    def _host_routes(self, host: str) -> HostRoutes:
        table = self.table
        if not host:
            if table.any_host is None:
                table.any_host = HostRoutes()
            return table.any_host
        if host.startswith("*."):
            return table.wildcard_hosts.setdefault(host[2:], HostRoutes())
        return table.exact_hosts.setdefault(host, HostRoutes())

    def _finish(self) -> None:
        if self.catch_all is not None:
            routes = self._host_routes("")
            if routes.default is None:
                routes.default = self.catch_all
            else:
                self._conflict(self.catch_all, routes.default, "the cluster-wide default backend")


def _age(ingress: KubeObject) -> tuple[str, str, str]:
    meta = ingress.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
    )


__all__ = [
    "CompileOptions",
    "CompileResult",
    "IngressError",
    "RoutePolicy",
    "compile_routes",
    "parse_host",
    "parse_path",
]

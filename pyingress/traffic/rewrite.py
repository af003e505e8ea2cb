"""Redirects and rewrites: ``permanent-redirect``, ``temporal-redirect``, ``from-to-www-redirect``,
``app-root``, ``rewrite-target``, ``x-forwarded-prefix`` and ``upstream-vhost`` (filter order 60).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from pyingress.policy.filters import Headers, Reply, RequestEdit, RequestView
from pyingress.traffic.policy import TrafficPolicy

_GROUP_RE = re.compile(r"\$(\d)")
_SAFE = "/:@!$&'()*+,;=-._~%"
Template = tuple[str | int, ...]


def compile_template(target: str) -> Template:
    """``/api/$2`` as ``("/api/", 2)``: groups are referenced by number, as in nginx."""
    parts: list[str | int] = []
    position = 0
    for match in _GROUP_RE.finditer(target):
        if match.start() > position:
            parts.append(target[position : match.start()])
        parts.append(int(match.group(1)))
        position = match.end()
    if position < len(target):
        parts.append(target[position:])
    return tuple(parts)


def expand(template: Template, match: re.Match[str]) -> str:
    groups = (match.group(0), *match.groups())
    return "".join(
        part if isinstance(part, str) else (groups[part] or "" if part < len(groups) else "")
        for part in template
    )


def path_regex(path: str) -> re.Pattern[str]:
    """A regex route's path as nginx's ``location ~*``: anchored at the start, any case."""
    return re.compile(path if path.startswith("^") else "^" + path, re.IGNORECASE)


def _redirect(code: int, location: str) -> Reply:
    body = f'<html><body><a href="{quote(location, safe=_SAFE + "?#")}">moved</a></body></html>\n'
    return Reply(
        code,
        [(b"Location", location.encode("latin-1", "replace")), (b"Content-Type", b"text/html")],
        body.encode("latin-1", "replace"),
    )


class RewriteFilter:
    """The request-editing and redirecting part of a :class:`TrafficPolicy`."""

    handles_response = False

    def __init__(self, policy: TrafficPolicy) -> None:
        self.policy = policy
        self._template = compile_template(policy.rewrite.target) if policy.rewrite else None
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        edits: list[tuple[bytes, bytes]] = []
        if policy.x_forwarded_prefix:
            edits.append((b"X-Forwarded-Prefix", policy.x_forwarded_prefix.encode("latin-1")))
        if policy.upstream_vhost:
            edits.append((b"Host", policy.upstream_vhost.encode("latin-1")))
        self._header_edit = RequestEdit(edits) if edits else None
        """The request headers this policy sets, built once."""
        self._only_headers = not (
            policy.redirect or policy.from_to_www or policy.app_root or self._template
        )

    async def on_request(self, request: RequestView) -> Reply | None:
        return self.check(request)

    def check(self, request: RequestView) -> Reply | None:
        if self._only_headers:
            if self._header_edit is not None:
                request.edit_request(self._header_edit)
            return None
        policy = self.policy
        if policy.redirect is not None:
            return _redirect(policy.redirect.code, policy.redirect.location)
        if policy.from_to_www and request.host != request.route.host:
            reply = self._www_redirect(request)
            if reply is not None:
                return reply
        if policy.app_root and request.path == "/":
            return _redirect(302, f"{request.scheme}://{self._authority(request)}{policy.app_root}")
        if self._template is not None:
            self._rewrite(request, self._template)
        if self._header_edit is not None:
            request.edit_request(self._header_edit)
        return None

    def on_response(self, request: RequestView, status: int, headers: Headers) -> None:
        return None

    @staticmethod
    def _authority(request: RequestView) -> str:
        host = request.header(b"host")
        return host.decode("latin-1") if host else request.host

    def _www_redirect(self, request: RequestView) -> Reply | None:
        """``www.x`` <-> ``x``: the request came in on the alias name of the route's host."""
        wanted, got = request.route.host, request.host
        if wanted != "www." + got and got != "www." + wanted:
            return None
        authority = self._authority(request)
        port = (
            authority[authority.rfind(":") :] if authority.rfind(":") > authority.rfind("]") else ""
        )
        return _redirect(308, f"{request.scheme}://{wanted}{port}{request.target}")

    def _rewrite(self, request: RequestView, template: Template) -> None:
        route_path = request.route.path
        pattern = self._patterns.get(route_path, False)
        if pattern is False:
            try:
                pattern = path_regex(route_path)
            except re.error:
                pattern = None
            self._patterns[route_path] = pattern
        if not isinstance(pattern, re.Pattern):
            return
        match = pattern.search(request.path)
        if match is None:
            return
        new_path = quote(expand(template, match), safe=_SAFE)
        if not new_path.startswith("/"):
            new_path = "/" + new_path
        if request.query:
            new_path += ("&" if "?" in new_path else "?") + request.query
        request.state["traffic.original_uri"] = request.target
        request.target = new_path

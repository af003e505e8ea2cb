"""Regex locations: a host where any Ingress sets ``use-regex`` or ``rewrite-target``.

nginx semantics, as ingress-nginx generates them: once one Ingress of a host asks for regex
paths, every path of that host is a regex location. Exact paths are checked first; then the
regex locations in order of descending path length, first match wins (so a regex can beat a
longer literal path, as ingress-nginx's docs warn); then the host's fallback route.

Regex paths are case-insensitive and anchored at the start, as nginx's ``location ~* ^...``.
Paths of Ingresses that did not ask for regex keep their meaning: a literal Exact path or an
element-wise Prefix (``/foo`` matches ``/foo`` and ``/foo/...``, not ``/foobar``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pyingress.model import Problem
from pyingress.routing.table import HostRoutes, PathType, Route

MAX_REGEX_LENGTH = 512
"""Longer path regexes are refused: they are run for every request of the host."""


def uses_regex(route: Route) -> bool:
    traffic = route.policy.traffic
    return traffic is not None and traffic.use_regex


def location_pattern(route: Route) -> re.Pattern[str]:
    """The compiled location of one route of a regex host; raises re.error or ValueError."""
    if uses_regex(route):
        if len(route.path) > MAX_REGEX_LENGTH:
            raise ValueError(f"longer than {MAX_REGEX_LENGTH} characters")
        return re.compile("^" + route.path.removeprefix("^"), re.IGNORECASE)
    literal = re.escape(route.path.rstrip("/"))
    return re.compile(f"^{literal}(?:/|$)" if literal else "^/")


class RegexHostRoutes(HostRoutes):
    """A host's routes matched as nginx regex locations (see the module docstring)."""

    __slots__ = ("_locations", "_source")

    def __init__(self, source: HostRoutes, problems: list[Problem]) -> None:
        super().__init__()
        self._source = source
        self.default = source.default
        locations: list[tuple[re.Pattern[str], Route]] = []
        for route in source.routes():
            if route is source.default:
                continue
            if route.path_type is PathType.EXACT and not uses_regex(route):
                self._exact[route.path] = route
                continue
            try:
                pattern = location_pattern(route)
            except (re.error, ValueError) as exc:
                problems.append(
                    Problem(
                        route.ingress,
                        "InvalidPathRegex",
                        f"path {route.path!r} of {route.host or '*'} is not a usable regular "
                        f"expression ({exc}); the path is not served",
                    )
                )
                continue
            locations.append((pattern, route))
        locations.sort(key=lambda item: len(item[1].path), reverse=True)
        self._locations = tuple(locations)

    def match(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for pattern, candidate in self._locations:
            if pattern.match(path):
                return candidate
        return self.default

    def routes(self) -> Iterator[Route]:
        yield from self._source.routes()

    def add(self, route: Route) -> Route | None:
        raise TypeError("a regex host is built whole from its routes")

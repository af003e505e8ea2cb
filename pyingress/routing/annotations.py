"""Typed access to Ingress annotations (``pyingress.io/`` and ``nginx.ingress.kubernetes.io/``).

Every annotation becomes a validated value at compile time; nothing an Ingress author writes is
ever pasted into configuration or evaluated. A bad value raises :class:`AnnotationError`, which
the compiler turns into a problem for that Ingress alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

NATIVE_PREFIX = "pyingress.io/"
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"
PREFIXES = (NATIVE_PREFIX, NGINX_PREFIX)

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AnnotationError(ValueError):
    """An annotation whose value cannot be used; the message names the key and the rule."""


class Annotations:
    """Reads one Ingress's annotations; the native prefix wins over the nginx one."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None) -> None:
        self._values = dict(values or {})

    @property
    def values(self) -> Mapping[str, str]:
        """Every annotation, any prefix (for the few read by full key, e.g. ``kubernetes.io/``)."""
        return self._values

    def key_of(self, name: str) -> str | None:
        """The full annotation key that sets ``name``, if any."""
        for prefix in PREFIXES:
            if prefix + name in self._values:
                return prefix + name
        return None

    def raw(self, name: str) -> str | None:
        key = self.key_of(name)
        return None if key is None else str(self._values[key]).strip()

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise self._error(name, value, 'expected "true" or "false"')

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self._error(name, value, "expected a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and {maximum}"
            raise self._error(name, value, f"expected a number between {minimum}{upper}")
        return number

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise self._error(name, value, f"expected one of {', '.join(choices)}")
        return value

    def words(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        value = self.raw(name)
        if not value:
            return ()
        return tuple(word.strip() for word in value.split(",") if word.strip())

    def networks(self, name: str) -> tuple[Network, ...]:
        """A comma-separated list of CIDRs or single addresses."""
        result = []
        for word in self.words(name):
            try:
                result.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                raise self._error(name, word, "expected an IP address or CIDR") from None
        return tuple(result)

    def _error(self, name: str, value: str, rule: str) -> AnnotationError:
        shown = value if len(value) <= 80 else value[:77] + "..."
        return AnnotationError(f"annotation {self.key_of(name) or name}={shown!r}: {rule}")

    def names(self) -> list[tuple[str, str]]:
        """Every ``(prefix, name)`` this Ingress carries under a known prefix."""
        found = []
        for key in sorted(self._values):
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    found.append((prefix, key[len(prefix) :]))
        return found


def refused_snippets(annotations: Annotations) -> list[str]:
    """Snippet annotations present: raw configuration text is never accepted."""
    return [prefix + name for prefix, name in annotations.names() if name.endswith("-snippet")]

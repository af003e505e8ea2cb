"""Post-login and post-logout redirects that can only lead to a host this controller serves.

An open redirect on the login endpoint would let anyone craft a link that passes through the
user's trusted login page and lands on a phishing site. So ``rd`` is either a plain local path
or an absolute http(s) URL whose host is an exact or wildcard host of the current route table;
anything odd (``//evil``, backslashes, userinfo, control characters) is refused.
"""

from __future__ import annotations

import string
from urllib.parse import urlsplit

from pyingress.routing.table import RouteTable

MAX_LENGTH = 4096
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-")


def safe_redirect(target: str | None, table: RouteTable) -> str | None:
    """``target`` when it is safe to redirect to, else None."""
    if not target or len(target) > MAX_LENGTH:
        return None
    if "\\" in target or any(ch.isspace() or not ch.isprintable() for ch in target):
        return None
    if target.startswith("/"):
        return None if target.startswith("//") else target
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return None
    del port  # only parsed to refuse malformed ports
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not parts.hostname:
        return None
    return target if is_served_host(parts.hostname, table) else None


def is_served_host(host: str, table: RouteTable) -> bool:
    """Whether ``host`` is an exact host of ``table`` or matches one of its ``*.`` wildcards.

    Host-less rules are ignored: they match every name, so they would vouch for any site.
    """
    name = host.lower().rstrip(".")
    if not name or not set(name) <= _HOST_CHARS:
        return False
    if name in table.exact_hosts:
        return True
    dot = name.find(".")
    return dot > 0 and name[dot + 1 :] in table.wildcard_hosts

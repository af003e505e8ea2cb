"""Host and path normalisation shared by the compiler and the lookup."""

from __future__ import annotations

from urllib.parse import unquote


def normalize_host(host: str) -> str:
    """Lower-case ``host``, drop a ``:port`` and one trailing dot (IPv6 literals kept whole)."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.rfind(":")
    if colon >= 0:
        host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    return host.lower()


def split_segments(path: str) -> list[str]:
    """The path elements of ``path`` for Prefix matching; one trailing slash is ignored.

    ``/`` gives ``[]``; ``/foo/bar/`` gives ``["foo", "bar"]``.
    """
    if path.endswith("/"):
        path = path[:-1]
    if not path:
        return []
    return path[1:].split("/")


def normalize_path(raw: str) -> str:
    """The path a request is routed by, as nginx routes it.

    Percent-escapes are decoded, ``.`` and ``..`` segments resolved and repeated slashes merged,
    so ``/%61dmin`` or ``/x/../admin`` cannot slip past a route (and its auth) for ``/admin``.
    The request is still forwarded with its original target.
    """
    if "%" not in raw and "/." not in raw and "//" not in raw:
        return raw
    path = unquote(raw, errors="surrogateescape")
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    resolved: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if resolved:
                resolved.pop()
            continue
        resolved.append(segment)
    normalised = "/" + "/".join(resolved)
    if trailing and resolved:
        normalised += "/"
    return normalised

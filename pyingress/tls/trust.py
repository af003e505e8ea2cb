"""Who the client is: forwarded headers are believed only from trusted proxies.

Anyone can send ``X-Forwarded-For: 1.2.3.4``. Only when the TCP peer is a proxy we trust
(``--trusted-proxies``) do its ``CF-Connecting-IP``, ``X-Forwarded-For`` and
``X-Forwarded-Proto`` say something about the client; from anyone else they are replaced.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLOUDFLARE_RANGES_DATE = "2024-06-25"
"""The date of the copy of https://www.cloudflare.com/ips-v4 and ``/ips-v6`` that
:data:`CLOUDFLARE_RANGES` matches (15 IPv4 and 7 IPv6 ranges; the list changes rarely). When it
changes, pass the new ranges as CIDRs to ``--trusted-proxies``."""

CLOUDFLARE_RANGES = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)
"""Cloudflare's published edge ranges (the ``cloudflare`` preset of ``--trusted-proxies``)."""

PRESETS = {"cloudflare": CLOUDFLARE_RANGES}


class TrustedProxies:
    """A set of networks whose forwarded headers are believed."""

    __slots__ = ("_cache", "networks")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """Parse ``--trusted-proxies``: comma-separated CIDRs, addresses and preset names.

        Raises ``ValueError`` naming the bad entry.
        """
        networks: list[IPNetwork] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            entries = PRESETS.get(item.lower(), (item,))
            for entry in entries:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(
                        f"--trusted-proxies: {item!r} is not a CIDR, an address or one of "
                        f"{', '.join(sorted(PRESETS))}"
                    ) from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is not None:
            return known
        ip = _ip(address)
        result = ip is not None and any(ip in net for net in self.networks)
        if len(self._cache) < 4096:
            self._cache[address] = result
        return result


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the proxy tells the upstream about the client."""

    address: str
    """The client's address: ``X-Real-IP``."""
    proto: str
    """``http`` or ``https`` as the client used it: ``X-Forwarded-Proto``."""
    forwarded_for: str
    """The ``X-Forwarded-For`` to send upstream: the trusted chain plus the peer."""


def client_info(
    peer: str, scheme: str, headers: Mapping[bytes, bytes], trusted: TrustedProxies
) -> ClientInfo:
    """Resolve the client from the TCP ``peer`` and, if it is trusted, its forwarded headers.

    ``headers`` maps lower-case header names to values (repeated headers joined with ``,``).
    """
    if not trusted or peer not in trusted:
        return ClientInfo(peer, scheme, peer)
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    chain = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
    if proto not in ("http", "https"):
        proto = scheme
    address = _cf_connecting_ip(headers) or _rightmost_untrusted([*chain, peer], trusted)
    return ClientInfo(address, proto, ", ".join([*chain, peer]))


def client_address(peer: str, headers: Mapping[bytes, bytes], trusted: TrustedProxies) -> str:
    """The client's address (see :func:`client_info`)."""
    return client_info(peer, "http", headers, trusted).address


def _cf_connecting_ip(headers: Mapping[bytes, bytes]) -> str | None:
    value = headers.get(b"cf-connecting-ip")
    if not value:
        return None
    ip = _ip(value.decode("latin-1").strip())
    return str(ip) if ip is not None else None


def _rightmost_untrusted(chain: list[str], trusted: TrustedProxies) -> str:
    """Walk the hops from the right; the first one we do not trust is the client.

    A hop that is not an address stops the walk: everything left of it is unverifiable, so the
    last verified hop is used.
    """
    last = chain[-1]
    for hop in reversed(chain):
        ip = _ip(hop)
        if ip is None:
            return last
        if hop not in trusted:
            return str(ip)
        last = str(ip)
    return last


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_values(
    peer: bytes,
    scheme: bytes,
    headers: Iterable[tuple[bytes, bytes, bytes]],
    trusted: TrustedProxies,
) -> tuple[bytes, bytes, bytes]:
    """``(X-Real-IP, X-Forwarded-For, X-Forwarded-Proto)`` for the upstream request.

    Shaped for the proxy's hot path: ``headers`` are ``(lower-case name, name, value)``
    triples, and they are not even looked at unless the peer is a trusted proxy.
    """
    if not trusted or peer.decode("latin-1") not in trusted:
        return peer, peer, scheme
    wanted = {b"x-forwarded-for", b"x-forwarded-proto", b"cf-connecting-ip"}
    found: dict[bytes, bytes] = {}
    for lname, _, value in headers:
        if lname in wanted:
            found[lname] = found[lname] + b", " + value if lname in found else value
    info = client_info(peer.decode("latin-1"), scheme.decode("latin-1"), found, trusted)
    return info.address.encode(), info.forwarded_for.encode(), info.proto.encode()

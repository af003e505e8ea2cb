"""Address pools: ``10.0.0.10-10.0.0.20`` ranges and ``10.0.0.0/28`` prefixes.

A prefix leaves out its network and broadcast addresses (MetalLB's ``avoidBuggyIPs``): some
clients and routers drop traffic to them, and a /31 or /32 keeps every address.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

IPv4 = ipaddress.IPv4Address


class PoolError(ValueError):
    """A pool entry that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Pool:
    """An ordered set of IPv4 addresses; allocation hands them out lowest first."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Pool:
        ranges = [_parse_entry(entry.strip()) for entry in entries]
        if not ranges:
            raise PoolError("the pool is empty")
        ranges.sort()
        for (_, end), (start, _) in itertools.pairwise(ranges):
            if start <= end:
                raise PoolError("pool entries overlap")
        return cls(tuple(ranges))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, IPv4):
            return False
        value = int(ip)
        return any(start <= value <= end for start, end in self.ranges)

    def __iter__(self) -> Iterator[IPv4]:
        for start, end in self.ranges:
            for value in range(start, end + 1):
                yield IPv4(value)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)


def _parse_entry(entry: str) -> tuple[int, int]:
    try:
        if "-" in entry:
            first, last = (IPv4(part.strip()) for part in entry.split("-", 1))
            if int(last) < int(first):
                raise PoolError(f"pool range {entry!r} ends before it starts")
            return int(first), int(last)
        network = ipaddress.IPv4Network(entry, strict=True)
    except PoolError:
        raise
    except ValueError as exc:
        raise PoolError(f"bad pool entry {entry!r}: {exc}") from None
    if network.prefixlen >= 31:
        return int(network.network_address), int(network.broadcast_address)
    return int(network.network_address) + 1, int(network.broadcast_address) - 1

"""Route-table benchmark: compile time for many Ingresses, and lookup cost at 10 vs 10,000.

Run: ``python benchmarks/compile.py``. Each Ingress has two paths (a Prefix ``/`` and an Exact
``/api/vN``), its own host, Service and EndpointSlice, so 10,000 Ingresses are 20,000 paths.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyingress.model import Snapshot
from pyingress.routing.compiler import compile_routes
from pyingress.routing.table import RouteTable
from tests.support.manifests import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
)


def world(count: int) -> Snapshot:
    objects = [ingress_class()]
    for i in range(count):
        namespace = f"team-{i % 100}"
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        objects.append(service(f"app-{i}", namespace=namespace))
        objects.append(endpoint_slice(f"app-{i}", [address], 8080, namespace=namespace))
        paths = [path("/", f"app-{i}"), path(f"/api/v{i % 3}", f"app-{i}", "Exact")]
        rules = [rule(f"app-{i}.example.com", *paths)]
        objects.append(ingress(f"app-{i}", rules, namespace=namespace))
    return Snapshot.of(objects)


def lookup_ns(table: RouteTable, count: int, lookups: int) -> float:
    """Median nanoseconds per ``match`` over random hosts and paths of the table."""
    rng = random.Random(7)
    paths = ["/", "/api/v1", "/static/app.js"]
    requests = [
        (f"App-{rng.randrange(count)}.example.com:443", rng.choice(paths))
        for _ in range(1000)
    ]
    rounds = []
    for _ in range(max(1, lookups // len(requests))):
        start = time.perf_counter_ns()
        for host, request_path in requests:
            table.match(host, request_path)
        rounds.append((time.perf_counter_ns() - start) / len(requests))
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=200_000)
    args = parser.parse_args()
    results = {}
    for count in (args.small, args.large):
        snapshot = world(count)
        start = time.perf_counter()
        result = compile_routes(snapshot)
        compile_s = time.perf_counter() - start
        assert not result.problems, result.problems[:3]
        results[count] = (compile_s, lookup_ns(result.table, count, args.lookups))
    print(f"{'ingresses':>10} {'paths':>7} {'compile':>10} {'lookup/request':>15}")
    for count, (compile_s, lookup) in results.items():
        print(f"{count:>10} {2 * count:>7} {compile_s * 1000:>8.0f}ms {lookup:>12.0f} ns")
    ratio = results[args.large][1] / results[args.small][1]
    print(f"lookup at {args.large} / lookup at {args.small}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

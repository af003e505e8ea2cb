"""``pyingress routes``: print the compiled route table as an aligned text table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyingress.commands.options import add_class_arguments, add_source_arguments, load_once
from pyingress.routing.table import Route, RouteTable

HEADER = ("HOST", "PATH", "TYPE", "INGRESS", "SERVICE", "ENDPOINTS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    add_class_arguments(parser)


def run(args: argparse.Namespace) -> int:
    loaded = load_once(args)
    result, file_problems = loaded.result, loaded.file_problems
    print(format_table(result.table))
    count = len(file_problems) + len(result.problems)
    if count:
        print(f"\n{count} problem(s); run `pyingress check` to list them")
    return 0


def format_table(table: RouteTable) -> str:
    rows = [HEADER] + [_row(host, route) for host, routes in table.host_routes()
                       for route in routes.routes()]  # fmt: skip
    if len(rows) == 1:
        return "no routes"
    return "\n".join(_aligned(rows))


def _row(host: str, route: Route) -> tuple[str, ...]:
    backend = route.backend
    if backend.endpoints:
        endpoints = ",".join(str(endpoint) for endpoint in backend.endpoints)
    else:
        endpoints = f"none ({backend.unavailable or 'no ready endpoint'})"
    path = "*" if route.path_type.value == "DefaultBackend" else route.path
    return (host, path, route.path_type.value, route.ingress_name, backend.service, endpoints)


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]

"""``pyingress check``: report every problem in the objects, one per line; exit 1 if any."""

from __future__ import annotations

import argparse

from pyingress.commands.options import (
    add_class_arguments,
    add_source_arguments,
    all_problems,
    load_once,
)
from pyingress.compat.report import print_report
from pyingress.tls.check import certificate_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    add_class_arguments(parser)
    parser.add_argument("--default-ssl-certificate", metavar="NS/NAME",
                        help="also check this Secret, as serve would serve it")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    loaded = load_once(args)
    result = loaded.result
    lines = all_problems(result, loaded.file_problems)
    tls = certificate_problems(loaded.snapshot, result.table, args.default_ssl_certificate)
    lines += [str(p) for p in sorted(tls, key=lambda p: (p.ref, p.reason, p.message))]
    for line in lines:
        print(line)
    changes = print_report(loaded.snapshot)
    if lines or changes:
        return 1
    served = len(result.table.served)
    routes = sum(1 for _ in result.table.routes())
    print(f"no problems: {served} Ingresses served, {routes} routes")
    return 0

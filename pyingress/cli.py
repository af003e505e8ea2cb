"""The ``pyingress`` command line: one sub-command per concern, each defined beside its code.

Each sub-command module provides ``add_arguments(parser)`` and ``run(args) -> int``; this file
only wires them together and turns startup errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "serve": ("pyingress.commands.serve", "run the ingress controller and proxy"),
    "check": ("pyingress.commands.check", "report every problem in the objects; exit 1 if any"),
    "routes": ("pyingress.commands.routes", "print the compiled route table"),
    "echo": ("pyingress.echo", "run a whoami-style JSON echo backend"),
    "announce": ("pyingress.announce.command", "answer ARP for load-balancer addresses"),
}


class StartupError(Exception):
    """A problem that stops a command before it does anything; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyingress", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args))
    except StartupError as exc:
        print(f"pyingress {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

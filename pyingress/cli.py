"""The ``pyingress`` command line: one sub-command per concern, each defined beside its code.

Each sub-command module provides ``add_arguments(parser)`` and ``run(args) -> int``; this file
only wires them together and turns startup errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

COMMANDS = {
    "serve": ("pyingress.commands.serve", "run the ingress controller and proxy"),
    "check": ("pyingress.commands.check", "report every problem in the objects; exit 1 if any"),
    "routes": ("pyingress.commands.routes", "print the compiled route table"),
    "echo": ("pyingress.echo", "run a whoami-style JSON echo backend"),
    "announce": ("pyingress.announce.command", "answer ARP for load-balancer addresses"),
}


class StartupError(Exception):
    """A problem that stops a command before it does anything; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """A bad flag is a startup error like any other: one line, exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that sub-command's module is imported and wired.

    Importing every sub-command would load the Kubernetes client, the OIDC libraries and the
    rest into every process, costing seconds of startup and tens of MB for features not in use.
    """
    parser = _Parser(prog="pyingress", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_module=module)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named by ``argv``, if any: the first word that is one."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_chosen_command(words)).parse_args(words)
    try:
        return int(args._module.run(args))
    except StartupError as exc:
        print(f"pyingress {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

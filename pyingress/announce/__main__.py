"""``python -m pyingress.announce``: the announce command alone.

The announcer runs on every node with raw-socket rights, so it can start without importing the
proxy's modules; the arguments and errors are the same as ``pyingress announce``.
"""

from __future__ import annotations

import argparse
import sys

from pyingress.announce import command
from pyingress.cli import StartupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyingress announce", description=command.__doc__)
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command.run(args)
    except StartupError as exc:
        print(f"pyingress announce: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

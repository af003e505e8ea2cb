"""``python -m tests.support.fake_apiserver --host 127.0.0.1 --port 0 --port-file F``"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from tests.support.fake_apiserver.hooks import Settings
from tests.support.fake_apiserver.server import FakeApiServer


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def main() -> int:
    parser = argparse.ArgumentParser(prog="fake_apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--history-size", type=int, default=10_000)
    parser.add_argument("--watch-timeout", type=float, default=1800.0)
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument("--require-namespaces", action="store_true",
                        help="refuse creates in namespaces that do not exist, as admission does")
    args = parser.parse_args()

    settings = Settings(watch_timeout=args.watch_timeout, bookmark_interval=args.bookmark_interval)
    server = FakeApiServer(args.host, args.port, args.history_size, settings,
                           args.require_namespaces)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        if args.port_file:
            _write_atomically(args.port_file, f"{server.port}\n")
        print(f"fake apiserver listening on {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

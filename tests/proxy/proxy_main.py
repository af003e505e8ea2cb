"""Run a proxy in its own process for tests that measure it: every request goes to one upstream.

``python -m tests.proxy.proxy_main --port P --upstream PORT``
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop

from pyingress.proxy import ProxyServer
from pyingress.routing.table import TableHolder
from tests.proxy.helpers import backend, route, table


async def main(port: int, upstream: int) -> None:
    server = ProxyServer(TableHolder(table(route(backend("default/app:80", upstream)))))
    await server.listen("127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.close(grace=1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.port, args.upstream))

"""``pyingress serve``: the controller and the proxy in one process (or N, sharing the ports).

Startup order matters for zero-downtime rollouts: the health port answers first (``/readyz``
503), the source is loaded and compiled, then the proxy listens, and only then does
``/readyz`` turn 200. On SIGTERM ``/readyz`` turns 503 again, the listeners close and
in-flight requests drain before the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from pyingress.auth.options import add_arguments as add_auth_arguments
from pyingress.cli import StartupError
from pyingress.commands import argtypes
from pyingress.commands.options import (
    add_class_arguments,
    add_source_arguments,
    compile_options,
    open_source,
)
from pyingress.observability.logs import LEVELS, setup_logging
from pyingress.sources.clustersettings import add_cluster_arguments
from pyingress.tls.service import add_arguments as add_tls_arguments

log = logging.getLogger("pyingress.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    add_class_arguments(parser)
    add_cluster_arguments(parser)
    add_tls_arguments(parser)
    add_auth_arguments(parser)
    add = parser.add_argument
    add(
        "--bind",
        default="0.0.0.0",
        metavar="ADDRESS",
        help="address the HTTP, HTTPS and health ports listen on (default: %(default)s)",
    )
    add(
        "--http-port",
        type=argtypes.port,
        default=80,
        metavar="PORT",
        help="plain HTTP port (default: %(default)s)",
    )
    add(
        "--https-port",
        type=argtypes.port,
        default=443,
        metavar="PORT",
        help="HTTPS port (default: %(default)s)",
    )
    add(
        "--health-port",
        type=argtypes.port,
        default=10254,
        metavar="PORT",
        help="port of /healthz, /readyz and /metrics (default: %(default)s)",
    )
    add(
        "--workers",
        type=argtypes.positive_int,
        default=1,
        metavar="N",
        help="processes sharing the ports with SO_REUSEPORT (default: 1)",
    )
    publish = parser.add_mutually_exclusive_group()
    publish.add_argument(
        "--publish-address", metavar="IP", help="address written into served Ingresses' status"
    )
    publish.add_argument(
        "--publish-service",
        type=argtypes.namespaced_name,
        metavar="NS/NAME",
        help="copy the status address from this LoadBalancer Service",
    )
    add(
        "--default-ssl-certificate",
        type=argtypes.namespaced_name,
        metavar="NS/NAME",
        help="Secret served to clients whose SNI matches no certificate",
    )
    add(
        "--enable-ssl-passthrough",
        action="store_true",
        help="route TLS by SNI to the backends of ssl-passthrough Ingresses, without "
        "terminating it (the HTTPS port peeks at every ClientHello)",
    )
    add(
        "--shutdown-grace",
        type=argtypes.seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long in-flight requests may finish after SIGTERM (default: %(default)s)",
    )
    add(
        "--log-level",
        choices=LEVELS,
        default="info",
        help="least severe level logged (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    if args.workers > 1:
        return _supervise(args)
    return _run_worker(args, index=0)


def _run_worker(args: argparse.Namespace, index: int) -> int:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(Controller(args, index).serve())


class Controller:
    """One worker: source, reconciler, proxy and (on worker 0) the health server."""

    def __init__(self, args: argparse.Namespace, index: int) -> None:
        self.args = args
        self.index = index
        self.shared_ports = args.workers > 1
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closers: list[Any] = []
        self._closers_async: list[Any] = []

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        try:
            await self._start()
            await self._stopping.wait()
            log.info("shutting down grace=%.1fs", self.args.shutdown_grace)
        finally:
            await self._close()
        return 0

    async def _start(self) -> None:
        from pyingress.controller import Reconciler
        from pyingress.observability.health import Readiness, health_app
        from pyingress.observability.metrics import RouteTableMetrics, create_registry
        from pyingress.routing.table import TableHolder
        from pyingress.sources.store import ObjectStore

        args = self.args
        self.store = store = ObjectStore()
        source = self.source = open_source(args, store)
        self.readiness = Readiness("source", "routes", "listeners")
        self.registry = create_registry()
        if self.index == 0:
            await self._start_health(health_app(self.readiness, self.registry))

        self._tasks.append(asyncio.create_task(source.run(), name="source"))
        self._closers.append(source.stop)
        await source.synced.wait()
        self.readiness.done("source")

        self.holder = TableHolder()
        reconciler = Reconciler(store, self.holder, compile_options(args),
                                RouteTableMetrics(self.registry))  # fmt: skip
        self.reconciler = reconciler
        observe_problems = getattr(source, "observe_problems", None)
        self.problem_feed: Any = None
        if observe_problems is not None:
            from pyingress.tls.service import ProblemFeed

            # Compile and certificate problems reach the source's Events together.
            self.problem_feed = ProblemFeed(observe_problems)
            reconciler.on_problems(self.problem_feed.compiled)
        self._tasks.append(asyncio.create_task(reconciler.run(), name="reconciler"))
        await reconciler.wait_compiled(store.version)
        self.readiness.done("routes")

        await self._start_proxy()
        await self.start_https_listener()
        self.readiness.done("listeners")
        table = self.holder.table
        health = f"{args.bind}:{args.health_port}" if self.index == 0 else "worker-0"
        log.info(
            "serving worker=%d http=%s:%d health=%s routes=%d problems=%d",
            self.index, args.bind, args.http_port, health,
            sum(1 for _ in table.routes()), len(reconciler.problems),
        )  # fmt: skip

    async def _start_health(self, app: Any) -> None:
        from pyingress.observability.health import HealthServer, bind_socket

        sock = self._bind(self.args.health_port, "--health-port", bind_socket)
        server = HealthServer(app, sock)
        await server.start()
        self._health = server

    def _bind(self, port: int, flag: str, bind: Any) -> Any:
        try:
            return bind(self.args.bind, port, reuse_port=self.shared_ports)
        except OSError as exc:
            raise StartupError(
                f"{flag}: cannot listen on {self.args.bind}:{port}: {_reason(exc)}"
            ) from None

    async def _start_proxy(self) -> None:
        from pyingress.proxy.metrics import ProxyMetrics
        from pyingress.proxy.server import ProxyConfig, ProxyServer

        config = ProxyConfig(trusted_proxies=self.args.trusted_proxies)
        self.proxy = ProxyServer(self.holder, config, ProxyMetrics(self.registry))
        from pyingress.auth.runtime import start_auth, stop_auth

        await start_auth(self.args, self.proxy, self.holder)
        self._closers_async.append(stop_auth)
        try:
            await self.proxy.listen(
                self.args.bind, self.args.http_port, reuse_port=self.shared_ports
            )
        except OSError as exc:
            raise StartupError(
                f"--http-port: cannot listen on {self.args.bind}:{self.args.http_port}: "
                f"{_reason(exc)}"
            ) from None

    async def start_https_listener(self) -> None:
        """Listen on ``--https-port`` with SNI certificates that follow the Secrets (and ACME)."""
        from pyingress.tls.service import TLSService

        cluster: Any = self.source if self.args.kubeconfig or self.args.in_cluster else None
        feed = self.problem_feed
        self.tls = TLSService(self.args, cluster=cluster, report=feed.tls if feed else None)
        self._closers_async.append(self.tls.close)
        await self.tls.start(
            self.proxy, self.store, self.holder, self.reconciler, reuse_port=self.shared_ports
        )

    async def _close(self) -> None:
        readiness = getattr(self, "readiness", None)
        if readiness is not None:
            readiness.undo("shutdown")
        proxy = getattr(self, "proxy", None)
        if proxy is not None:
            await proxy.close(self.args.shutdown_grace)
        for close in self._closers:
            close()
        for close_async in self._closers_async:
            with contextlib.suppress(Exception):
                await close_async()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        health = getattr(self, "_health", None)
        if health is not None:
            await health.close()


def _reason(exc: OSError) -> str:
    """``Address already in use``, whichever event loop raised it."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _supervise(args: argparse.Namespace) -> int:
    """Fork ``--workers`` processes that each serve on the shared ports; stop them together.

    A worker that exits early (a startup error, a crash) stops the others: the process
    manager (kubelet, systemd) sees one failed process and restarts it whole.
    """
    from pyingress.sources.store import ObjectStore

    open_source(args, ObjectStore())  # fail here, once, on a bad folder
    children: dict[int, int] = {}
    for index in range(args.workers):
        pid = os.fork()
        if pid == 0:
            os._exit(_child(args, index))
        children[pid] = index
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while children:
        pid, code = os.waitpid(-1, 0)
        if pid not in children:
            continue
        del children[pid]
        exit_code = os.waitstatus_to_exitcode(code)
        if exit_code != 0 and not stopping:
            log.error("worker exited pid=%d code=%d; stopping the others", pid, exit_code)
            status = exit_code if exit_code > 0 else 1
            forward(signal.SIGTERM, None)
    return status


def _child(args: argparse.Namespace, index: int) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        return _run_worker(args, index)
    except StartupError as exc:
        print(f"pyingress serve: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except BaseException:
        log.exception("worker failed index=%d", index)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()

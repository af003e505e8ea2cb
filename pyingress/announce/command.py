"""``pyingress announce``: answer ARP for load-balancer addresses on one interface.

Static mode (``--address``) announces fixed addresses; cluster mode (``--pool`` with
``--kubeconfig``/``--in-cluster``) allocates pool addresses to Services and elects, per address,
the node that announces it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from pyingress.announce.garp import GarpSettings
from pyingress.announce.metrics import AnnounceMetrics, HealthServer
from pyingress.announce.packet import ArpSocket, PermissionProblem, interface_mac
from pyingress.announce.pool import Pool, PoolError
from pyingress.announce.probe import ProbeSettings
from pyingress.announce.responder import Responder
from pyingress.announce.speaker import Speaker
from pyingress.cli import StartupError
from pyingress.commands.argtypes import ipv4, positive_seconds, seconds

log = logging.getLogger("pyingress.announce")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interface", required=True, help="interface to answer ARP on")
    parser.add_argument(
        "--address", action="append", type=ipv4, default=[], metavar="IP",
        help="static mode: announce this address (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--pool", action="append", default=[], metavar="RANGE|CIDR",
        help="cluster mode: addresses to allocate, e.g. 10.0.0.10-10.0.0.20 or 10.0.0.0/28",
    )  # fmt: skip
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--kubeconfig", metavar="PATH", help="cluster mode: kubeconfig file")
    source.add_argument("--in-cluster", action="store_true", help="cluster mode: service account")
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="this node")
    parser.add_argument(
        "--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the per-address and allocator Leases",
    )  # fmt: skip
    parser.add_argument(
        "--ignore-classless", action="store_true",
        help="only serve Services with spec.loadBalancerClass pyingress.io/announcer",
    )  # fmt: skip
    parser.add_argument(
        "--lease-duration", type=positive_seconds, default=1.2, metavar="SECONDS",
        help="how long an address's Lease lasts without renewal; failover takes about this "
             "long plus the probe (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--renew-period", type=positive_seconds, default=0.2, metavar="SECONDS",
        help="how often the announcing node renews its Lease (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--retry-period", type=positive_seconds, default=0.1, metavar="SECONDS",
        help="how often other nodes check whether a Lease expired (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--require-ready-url", metavar="URL",
        help="only stand for election while this URL (the local proxy's /readyz) answers 2xx",
    )  # fmt: skip
    parser.add_argument("--probe-count", type=int, default=3, help="ARP probes before claiming")
    parser.add_argument(
        "--probe-interval", type=seconds, default=0.08, metavar="SECONDS",
        help="gap between ARP probes; the probe window is count x interval (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--conflict-retry", type=seconds, default=5.0, metavar="SECONDS",
        help="probe a conflicting address again after this long (0 = never)",
    )  # fmt: skip
    parser.add_argument("--garp-count", type=int, default=5, help="GARP bursts on takeover")
    parser.add_argument("--garp-interval", type=seconds, default=1.1, metavar="SECONDS")
    parser.add_argument(
        "--garp-refresh", type=seconds, default=0.0, metavar="SECONDS",
        help="keep sending a GARP burst this often while holding an address (0 = off)",
    )  # fmt: skip
    parser.add_argument("--health-host", default="0.0.0.0")
    parser.add_argument("--health-port", type=int, default=10255)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cluster = bool(args.pool or args.kubeconfig or args.in_cluster)
    if cluster and args.address:
        raise StartupError("use either --address (static) or --pool with a cluster, not both")
    if not cluster and not args.address:
        raise StartupError(
            "give --address IP (static mode) or --pool with --kubeconfig/--in-cluster"
        )
    pool: Pool | None = None
    if cluster:
        if not (args.kubeconfig or args.in_cluster) or not args.pool or not args.node_name:
            raise StartupError(
                "cluster mode needs --pool, --kubeconfig or --in-cluster, and --node-name"
            )
        try:
            pool = Pool.parse(args.pool)
        except PoolError as exc:
            raise StartupError(str(exc)) from None
    if args.probe_count < 0 or args.garp_count < 0:
        raise StartupError("--probe-count and --garp-count must be zero or more")
    try:
        mac = interface_mac(args.interface)
        sock = ArpSocket(args.interface)
    except PermissionProblem as exc:
        raise StartupError(str(exc)) from None
    except (LookupError, OSError) as exc:
        raise StartupError(f"interface {args.interface}: {exc}") from None
    try:
        asyncio.run(_main(args, sock, mac, pool))
    finally:
        sock.close()
    return 0


async def _main(args: argparse.Namespace, sock: ArpSocket, mac: bytes, pool: Pool | None) -> None:
    metrics = AnnounceMetrics()
    responder = Responder(sock, mac, metrics)
    loop = asyncio.get_running_loop()
    responder.start(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(metrics, args.health_host, args.health_port)
    try:
        await health.start()
    except OSError as exc:
        raise StartupError(f"health port {args.health_port}: {exc}") from None
    probe_settings = ProbeSettings(args.probe_count, args.probe_interval)
    garp_settings = GarpSettings(args.garp_count, args.garp_interval, args.garp_refresh)
    try:
        if pool is None:
            speaker = Speaker(responder, probe_settings, garp_settings, args.conflict_retry)
            for ip in args.address:
                speaker.take(ip)
            log.info("static mode on %s: %s", args.interface, ", ".join(map(str, args.address)))
            await stop.wait()
            speaker.release_all()
        else:
            from pyingress.announce.cluster import run_cluster

            cluster_task = asyncio.create_task(
                run_cluster(args, pool, responder, probe_settings, garp_settings, health)
            )
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({cluster_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if cluster_task.done():
                cluster_task.result()  # a failure of the cluster loop ends the process loudly
            cluster_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cluster_task
    finally:
        responder.stop()
        await health.close()

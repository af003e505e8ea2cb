"""Announcer failover benchmark: SIGKILL the announcing node, time until a client connects again.

Run as root: ``python benchmarks/failover.py --runs 20``. Everything happens inside throw-away
network namespaces (a bridge, two announcer "nodes", one client, the API-server double on the
bridge); the host's interfaces are never touched.

Each run: the client resolves the address to the leader's MAC; the survivor's namespace has the
address on ``lo`` with a TCP listener (the announcer never binds it); the leader's announcer is
killed with SIGKILL (its node keeps no listener, so it is as good as dead); the client retries a
TCP connect (0.1 s timeout, every 50 ms) and the time from the kill to the first success is
recorded; the killed announcer is then restarted for the next run. Extra arguments after ``--``
go to both announcers (e.g. ``-- --lease-duration 1 --renew-period 0.25 --retry-period 0.1``).
"""

from __future__ import annotations

import argparse
import functools
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.announce.cluster_support import LabApi
from tests.announce.helpers import healthz, ns_free_port
from tests.announce.netlab import Lab, Namespace, missing_requirements
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

VIP = "10.0.0.100"
PORT = 8080


def start(ns: Namespace, node: str, api: LabApi, extra: list[str]) -> ManagedProcess:
    port = ns_free_port(ns)
    proc = ns.announce(
        "--interface", "eth0", "--kubeconfig", str(api.kubeconfig), "--node-name", node,
        "--pool", VIP, "--health-port", str(port), "--log-level", "WARNING", *extra,
    )  # fmt: skip

    def up() -> bool:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"announcer {node} exited:\n{proc.output}")
        try:
            return healthz(ns, port) == 200
        except OSError:
            return False

    wait_until(up, what=f"announcer {node}")
    return proc


def serve_vip(ns: Namespace) -> socket.socket:
    ns.sh(f"ip addr add {VIP}/32 dev lo")

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((VIP, PORT))
        sock.listen(64)
        return sock

    return ns.run(make)


def unserve_vip(ns: Namespace, sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
    ns.sh(f"ip addr del {VIP}/32 dev lo", check=False)


def time_to_connect(client: Namespace, started: float, limit: float = 60.0) -> float:
    def loop() -> float:
        while time.monotonic() - started < limit:
            attempt = time.monotonic()
            try:
                with socket.create_connection((VIP, PORT), timeout=0.1):
                    return time.monotonic() - started
            except OSError:
                time.sleep(max(0.0, 0.05 - (time.monotonic() - attempt)))
        raise RuntimeError("no connection within the limit")

    return client.run(loop)


def neighbour_is(client: Namespace, mac: str) -> bool:
    return client.neighbour(VIP) == mac


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("extra", nargs="*", help="arguments for both announcers (after --)")
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    lab = Lab()
    procs: dict[str, ManagedProcess] = {}
    listeners: dict[str, socket.socket | None] = {"node-a": None, "node-b": None}
    with tempfile.TemporaryDirectory(prefix="failover-") as scratch:
        api = LabApi(lab, Path(scratch))
        try:
            hosts = {
                "node-a": lab.add_host("a", "10.0.0.2"),
                "node-b": lab.add_host("b", "10.0.0.3"),
            }
            client = lab.add_host("c", "10.0.0.10")
            for node, ns in hosts.items():
                ns.sh("sysctl -q -w net.ipv4.conf.all.arp_ignore=1")
                ns.sh("sysctl -q -w net.ipv4.conf.all.arp_announce=2")
                procs[node] = start(ns, node, api, args.extra)
            api.create_service("web")
            results: list[float] = []
            for run in range(args.runs):
                leader = str(wait_until(lambda: api.lease_holder(VIP), what="a leader"))
                survivor = "node-b" if leader == "node-a" else "node-a"
                unserve_vip(hosts[leader], listeners[leader])
                listeners[leader] = None
                if listeners[survivor] is None:
                    listeners[survivor] = serve_vip(hosts[survivor])
                client.sh(f"ip neigh flush dev eth0 to {VIP}", check=False)
                client.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                           .sendto(b"x", (VIP, 9)))  # fmt: skip
                wait_until(
                    functools.partial(neighbour_is, client, hosts[leader].mac()),
                    what="the client to learn the leader's MAC",
                )
                started = time.monotonic()
                procs.pop(leader).stop(signal.SIGKILL)
                elapsed = time_to_connect(client, started)
                results.append(elapsed)
                print(f"run {run + 1:2d}: {leader} killed, connected via {survivor} "
                      f"after {elapsed:.3f} s", flush=True)  # fmt: skip
                procs[leader] = start(hosts[leader], leader, api, args.extra)
            print(f"\nfailover over {len(results)} runs (SIGKILL -> first TCP connect): "
                  f"p50 {statistics.median(results):.3f} s, p99 {percentile(results, 0.99):.3f} s, "
                  f"min {min(results):.3f} s, max {max(results):.3f} s")  # fmt: skip
        finally:
            for proc in procs.values():
                proc.stop()
            for sock in listeners.values():
                if sock is not None:
                    sock.close()
            api.stop()
            lab.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cluster mode end to end: the API double on the lab's bridge, announcers in host namespaces."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.announce.cluster_support import LabApi
from tests.announce.helpers import healthz, metrics, ns_free_port
from tests.announce.netlab import Lab, Namespace
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.root

FAST = ["--lease-duration", "1", "--renew-period", "0.25", "--retry-period", "0.1"]


@pytest.fixture
def api(lab: Lab, tmp_path: Path) -> Iterator[LabApi]:
    server = LabApi(lab, tmp_path)
    try:
        yield server
    finally:
        server.stop()


class Announcers:
    def __init__(self, api: LabApi) -> None:
        self.api = api
        self.running: dict[str, tuple[Namespace, ManagedProcess, int]] = {}

    def start(self, node: str, ns: Namespace, pool: list[str], *extra: str) -> int:
        port = ns_free_port(ns)
        args = ["--interface", "eth0", "--kubeconfig", str(self.api.kubeconfig),
                "--node-name", node, "--health-port", str(port), *FAST, *extra]  # fmt: skip
        for entry in pool:
            args += ["--pool", entry]
        proc = ns.announce(*args)
        self.running[node] = (ns, proc, port)

        def up() -> bool:
            if proc.proc.poll() is not None:
                raise AssertionError(f"announcer {node} exited:\n{proc.output}")
            try:
                return healthz(ns, port) == 200
            except OSError:
                return False

        wait_until(up, what=f"announcer {node}")
        return port

    def stop(self, node: str, sig: int = signal.SIGTERM) -> str:
        _, proc, _ = self.running.pop(node)
        output = proc.output
        proc.stop(sig)
        return output

    def close(self) -> None:
        for node in list(self.running):
            self.stop(node)


@pytest.fixture
def announcers(api: LabApi) -> Iterator[Announcers]:
    group = Announcers(api)
    try:
        yield group
    finally:
        group.close()


def arp_answers(client: Namespace, ip: str) -> str:
    return client.sh(f"arping -c 1 -w 2 -I eth0 {ip}", check=False).lower()


def test_allocation_rules_against_the_api(lab: Lab, api: LabApi, announcers: Announcers) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    announcers.start("node-a", a, ["10.0.0.100-10.0.0.103"])

    api.create_service("web")
    assert wait_until(lambda: api.service_ips("web") == ["10.0.0.100"], what="web's address")
    wait_until(lambda: a.mac() in arp_answers(c, "10.0.0.100"), what="web's address answered")
    assert "10.0.0.100" not in a.sh("ip -br addr")

    key = {"metallb.io/allow-shared-ip": "team"}
    api.create_service("dns", annotations=key, ports=[{"port": 53, "protocol": "UDP"}])
    api.create_service("dns-tcp", annotations=key, ports=[{"port": 53, "protocol": "TCP"}])
    api.create_service("wants", annotations={"pyingress.io/load-balancer-ips": "10.0.0.103"})
    api.create_service("foreign", loadBalancerClass="example.com/other")
    wait_until(lambda: api.service_ips("wants") == ["10.0.0.103"], what="requested address")
    # Only once "wants" holds it: an address already held is refused to a later Service (two
    # Services created in the same second would be decided by name instead).
    api.create_service("clash", loadBalancerIP="10.0.0.103")
    wait_until(lambda: api.service_ips("dns") == api.service_ips("dns-tcp") == ["10.0.0.101"],
               what="a shared address")  # fmt: skip
    assert api.service_ips("foreign") == []
    wait_until(
        lambda: any(e["reason"] == "LoadBalancerIPInUse"
                    and e["involvedObject"]["name"] == "clash" for e in api.events()),
        what="an Event for the refused request",
    )  # fmt: skip
    assert api.service_ips("clash") == []

    api.call("DELETE", "/api/v1/namespaces/default/services/web")
    wait_until(lambda: api.lease_holder("10.0.0.100") == "", what="the lease to be handed back")
    wait_until(lambda: "0 packets received" in arp_answers(c, "10.0.0.100"),
               what="the deleted Service's address to go quiet")  # fmt: skip
    api.call("PATCH", "/api/v1/namespaces/default/services/wants",
             {"spec": {"type": "ClusterIP"}}, "application/merge-patch+json")  # fmt: skip
    wait_until(lambda: api.service_ips("wants") == [], what="the address to be released")
    api.create_service("next")
    wait_until(lambda: api.service_ips("next") == ["10.0.0.100"], what="the freed address reused")

    # A new pool: every address outside it is released and replaced.
    announcers.stop("node-a")
    announcers.start("node-a", a, ["10.0.0.110-10.0.0.115"])
    new_pool = {f"10.0.0.{n}" for n in range(110, 116)}

    def moved() -> bool:
        ips = {name: api.service_ips(name) for name in ("next", "dns", "dns-tcp")}
        return all(len(v) == 1 and v[0] in new_pool for v in ips.values()) and (
            ips["dns"] == ips["dns-tcp"] != ips["next"]
        )

    wait_until(moved, what="re-allocation from the new pool")
    new_ip = api.service_ips("next")[0]
    wait_until(lambda: a.mac() in arp_answers(c, new_ip), what="new address answered")
    assert "0 packets received" in arp_answers(c, "10.0.0.100")


def test_conflict_is_reported_as_an_event(lab: Lab, api: LabApi, announcers: Announcers) -> None:
    a = lab.add_host("a", "10.0.0.2")
    x = lab.add_host("x", "10.0.0.3")
    x.sh("ip addr add 10.0.0.100/32 dev eth0")
    port = announcers.start("node-a", a, ["10.0.0.100-10.0.0.101"])
    api.create_service("web")
    wait_until(
        lambda: any(e["reason"] == "AddressConflict" and x.mac() in e["message"]
                    for e in api.events()),
        what="an AddressConflict Event",
    )  # fmt: skip
    samples = metrics(a, port)
    assert samples[("pyingress_announce_conflicts_total", "10.0.0.100")] >= 1
    assert samples.get(("pyingress_announce_leader", "10.0.0.100"), 0) == 0


def test_local_traffic_policy_follows_ready_endpoints(
    lab: Lab, api: LabApi, announcers: Announcers
) -> None:
    a = lab.add_host("a", "10.0.0.2")
    b = lab.add_host("b", "10.0.0.3")
    announcers.start("node-a", a, ["10.0.0.100-10.0.0.101"])
    announcers.start("node-b", b, ["10.0.0.100-10.0.0.101"])
    api.create_service("web", externalTrafficPolicy="Local")
    wait_until(lambda: api.service_ips("web") == ["10.0.0.100"])
    assert api.lease_holder("10.0.0.100") == "", "no ready endpoint anywhere: nobody announces"

    def slice_on(node: str, ready: bool = True) -> dict[str, object]:
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": node,
                           "conditions": {"ready": ready}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }  # fmt: skip

    api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
             slice_on("node-b"))  # fmt: skip
    wait_until(lambda: api.lease_holder("10.0.0.100") == "node-b", what="node-b to announce")
    api.call("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1",
             slice_on("node-a"))  # fmt: skip
    wait_until(lambda: api.lease_holder("10.0.0.100") == "node-a", what="node-a to take over")
    c = lab.add_host("c", "10.0.0.10")
    wait_until(lambda: a.mac() in arp_answers(c, "10.0.0.100"), what="node-a to answer")


def listen_on(ns: Namespace, ip: str, port: int) -> socket.socket:
    """Bind the address locally in ``ns`` (the announcer never does) and listen on it."""
    ns.sh("sysctl -q -w net.ipv4.conf.all.arp_ignore=1")
    ns.sh("sysctl -q -w net.ipv4.conf.all.arp_announce=2")
    ns.sh(f"ip addr add {ip}/32 dev lo")

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ip, port))
        sock.listen(64)
        return sock

    return ns.run(make)


def connects(ns: Namespace, ip: str, port: int) -> bool:
    def attempt() -> bool:
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return True
        except OSError:
            return False

    return ns.run(attempt)


def test_failover_moves_the_address_to_the_survivor(
    lab: Lab, api: LabApi, announcers: Announcers
) -> None:
    hosts = {"node-a": lab.add_host("a", "10.0.0.2"), "node-b": lab.add_host("b", "10.0.0.3")}
    c = lab.add_host("c", "10.0.0.10")
    vip = "10.0.0.100"
    for node, ns in hosts.items():
        announcers.start(node, ns, [vip])
    api.create_service("web")
    leader = wait_until(lambda: api.lease_holder(vip), what="a leader")
    survivor = "node-b" if leader == "node-a" else "node-a"
    listener = listen_on(hosts[survivor], vip, 8080)
    try:
        c.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (vip, 9)))
        wait_until(lambda: c.neighbour(vip) == hosts[leader].mac(), what="client learns leader")
        assert not connects(c, vip, 8080), "the leader's node does not serve the address"

        announcers.stop(leader, signal.SIGKILL)
        wait_until(lambda: c.neighbour(vip) == hosts[survivor].mac(), what="neighbour flip")
        wait_until(lambda: connects(c, vip, 8080), what="a connection through the survivor")
        assert api.lease_holder(vip) == survivor
    finally:
        listener.close()


class ReadyServer:
    """A stand-in for the local proxy's ``/readyz`` inside a namespace; ``ready`` flips it."""

    def __init__(self, ns: Namespace) -> None:
        self.ready = False
        self.sock = ns.run(lambda: socket.create_server(("127.0.0.1", 0)))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                status = b"200 OK" if self.ready else b"503 Service Unavailable"
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_only_a_ready_proxy_stands_for_election(
    lab: Lab, api: LabApi, announcers: Announcers
) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    proxy = ReadyServer(a)
    try:
        url = f"http://127.0.0.1:{proxy.port}/readyz"
        announcers.start("node-a", a, ["10.0.0.100"], "--require-ready-url", url)
        api.create_service("web")
        wait_until(lambda: api.service_ips("web") == ["10.0.0.100"], what="an address")
        assert api.lease_holder("10.0.0.100") == ""
        assert "0 packets received" in arp_answers(c, "10.0.0.100")
        proxy.ready = True
        wait_until(lambda: api.lease_holder("10.0.0.100") == "node-a", what="node-a to stand")
        wait_until(lambda: a.mac() in arp_answers(c, "10.0.0.100"), what="the address answered")
        proxy.ready = False
        wait_until(lambda: api.lease_holder("10.0.0.100") == "", what="node-a to stand down")
        assert "0 packets received" in arp_answers(c, "10.0.0.100")
    finally:
        proxy.close()

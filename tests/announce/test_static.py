"""Static mode on a real (namespaced) Ethernet segment: answers, GARP, filter, conflicts."""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyingress.announce import frames
from tests.announce.helpers import Captured, healthz, metrics, ns_free_port, read_pcap
from tests.announce.netlab import Lab, Namespace
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.root

VIP = "10.0.0.100"


@pytest.fixture
def procs() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def start_announcer(ns: Namespace, procs: list[ManagedProcess], *extra: str) -> int:
    port = ns_free_port(ns)
    proc = ns.announce("--interface", "eth0", "--health-port", str(port), *extra)
    procs.append(proc)

    def up() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(f"announcer exited:\n{proc.output}")
        try:
            return healthz(ns, port) == 200
        except OSError:
            return False

    wait_until(up, what="announcer health endpoint")
    return port


def announcing(ns: Namespace, port: int, ip: str = VIP) -> bool:
    return metrics(ns, port).get(("pyingress_announce_leader", ip)) == 1.0


def poke(ip: str) -> None:
    """Send one UDP datagram to ``ip`` (discard port), which makes the kernel resolve it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", (ip, 9))


def start_capture(ns: Namespace, procs: list[ManagedProcess], path: Path) -> None:
    proc = ns.spawn(["tcpdump", "-U", "-n", "-i", "eth0", "-w", str(path), "arp"])
    procs.append(proc)
    wait_until(lambda: "listening on" in proc.output, what="tcpdump to start")


def test_client_resolves_address_to_announcer_mac(lab: Lab, procs: list[ManagedProcess]) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    port = start_announcer(a, procs, "--address", VIP, "--garp-count", "0")
    wait_until(lambda: announcing(a, port), what="announcer to take the address")

    out = c.sh(f"arping -c 2 -w 5 -I eth0 {VIP}", check=False)
    assert a.mac() in out.lower(), out
    # The kernel path too: a datagram to the address makes the client resolve it itself.
    c.run(lambda: poke(VIP))
    assert wait_until(lambda: c.neighbour(VIP) == a.mac(), what="client neighbour entry")
    assert VIP not in a.sh("ip -br addr"), "the announcer must not add the address"
    samples = metrics(a, port)
    assert samples[("pyingress_announce_arp_replies_sent_total", VIP)] >= 2
    assert samples[("pyingress_announce_arp_requests_received_total", VIP)] >= 2


def test_kernel_filter_keeps_other_arp_out(lab: Lab, procs: list[ManagedProcess]) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    port = start_announcer(a, procs, "--address", VIP, "--garp-count", "0")
    wait_until(lambda: announcing(a, port), what="announcer to take the address")

    c.sh("arping -c 5 -w 2 -I eth0 10.0.0.77", check=False)  # nobody has it
    c.sh("arping -c 3 -w 2 -I eth0 10.0.0.2", check=False)  # the announcer's own address
    out = c.sh(f"arping -c 1 -w 5 -I eth0 {VIP}", check=False)
    assert a.mac() in out.lower(), out
    samples = metrics(a, port)
    seen = samples[("pyingress_announce_arp_frames_received_total", "")]
    answered = samples[("pyingress_announce_arp_requests_received_total", VIP)]
    # Only requests for the address woke the process; the eight other requests stayed in the kernel.
    assert answered >= 1
    assert seen == answered


def test_gratuitous_arp_bursts_use_both_forms(
    lab: Lab, procs: list[ManagedProcess], tmp_path: Path
) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    pcap = tmp_path / "garp.pcap"
    start_capture(c, procs, pcap)
    mac = bytes.fromhex(a.mac().replace(":", ""))
    ip = ipaddress.IPv4Address(VIP)
    start_announcer(a, procs, "--address", VIP, "--garp-count", "3", "--garp-interval", "0.5")

    def garps() -> list[Captured]:
        return [x for x in read_pcap(pcap) if x.frame.is_gratuitous and x.frame.sha == mac]

    wait_until(lambda: len(garps()) >= 6, what="three GARP bursts")
    probes = [x for x in read_pcap(pcap) if x.frame.is_probe and x.frame.tpa == ip]
    assert len(probes) == 3, "an RFC 5227 probe precedes the claim"
    assert max(p.time for p in probes) <= min(g.time for g in garps())
    seen = garps()
    requests = [g for g in seen if g.frame.op == frames.OP_REQUEST]
    replies = [g for g in seen if g.frame.op == frames.OP_REPLY]
    assert len(requests) == 3 and len(replies) == 3
    for g in seen:
        assert g.frame.eth_dst == frames.BROADCAST and g.frame.eth_src == mac
        assert g.frame.spa == g.frame.tpa == ip
    assert all(g.frame.tha == frames.ZERO_MAC for g in requests)
    assert all(g.frame.tha == mac for g in replies), "Linux ignores replies unless THA == SHA"
    # Spacing only as a sanity check: bursts are spread out, not sent back to back.
    starts = [g.time for g in requests]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.2 < gap < 5.0 for gap in gaps), gaps


def test_garp_refresh_keeps_sending(lab: Lab, procs: list[ManagedProcess], tmp_path: Path) -> None:
    a = lab.add_host("a", "10.0.0.2")
    c = lab.add_host("c", "10.0.0.10")
    pcap = tmp_path / "refresh.pcap"
    start_capture(c, procs, pcap)
    start_announcer(a, procs, "--address", VIP, "--garp-count", "1", "--garp-refresh", "0.3")
    wait_until(
        lambda: sum(x.frame.is_gratuitous for x in read_pcap(pcap)) >= 8,
        what="refresh bursts after the single takeover burst",
    )


def test_conflicting_host_blocks_announcement(lab: Lab, procs: list[ManagedProcess]) -> None:
    a = lab.add_host("a", "10.0.0.2")
    x = lab.add_host("x", "10.0.0.3")
    c = lab.add_host("c", "10.0.0.10")
    x.sh(f"ip addr add {VIP}/32 dev eth0")
    port = start_announcer(a, procs, "--address", VIP, "--conflict-retry", "0")

    wait_until(
        lambda: metrics(a, port).get(("pyingress_announce_conflicts_total", VIP), 0) >= 1,
        what="the conflict to be counted",
    )
    assert "address conflict: 10.0.0.100 is already used by " + x.mac() in procs[0].output
    out = c.sh(f"arping -c 3 -w 5 -I eth0 {VIP}", check=False).lower()
    assert x.mac() in out and a.mac() not in out, out
    samples = metrics(a, port)
    assert samples.get(("pyingress_announce_leader", VIP), 0) == 0
    assert samples.get(("pyingress_announce_arp_replies_sent_total", VIP), 0) == 0
    assert samples.get(("pyingress_announce_gratuitous_sent_total", VIP), 0) == 0


@pytest.mark.parametrize("standalone", [False, True], ids=["pyingress", "standalone"])
def test_without_cap_net_raw_one_clear_error(lab: Lab, standalone: bool) -> None:
    a = lab.add_host("a", "10.0.0.2")
    args = a.announce_args("--interface", "eth0", "--address", VIP, standalone=standalone)
    # Still root, but with CAP_NET_RAW gone from every capability set.
    proc = a.spawn(["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", *args])
    try:
        wait_until(lambda: proc.proc.poll() is not None, what="the announcer to give up")
        assert proc.proc.returncode == 2
        lines = proc.output.strip().splitlines()
        assert lines == [
            "pyingress announce: error: opening a raw packet socket needs CAP_NET_RAW "
            "(run as root or grant the capability)"
        ]
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interface", "nosuch0", "--address", VIP], "interface nosuch0: no such interface"),
        (["--interface", "lo"], "give --address IP (static mode) or --pool"),
        (
            ["--interface", "lo", "--address", VIP, "--pool", "10.0.0.0/30"],
            "use either --address (static) or --pool",
        ),
        (
            [
                "--interface",
                "lo",
                "--pool",
                "10.0.0.9-10.0.0.1",
                "--kubeconfig",
                "k",
                "--node-name",
                "n",
            ],
            "pool range '10.0.0.9-10.0.0.1' ends before it starts",
        ),
        (["--interface", "lo", "--address", VIP], "lo is not an Ethernet interface"),
    ],
)
def test_bad_input_is_one_clear_line(lab: Lab, args: list[str], message: str) -> None:
    a = lab.add_host("a", "10.0.0.2")
    proc = a.spawn(a.announce_args(*args))
    try:
        wait_until(lambda: proc.proc.poll() is not None, what="the announcer to refuse")
        lines = proc.output.strip().splitlines()
        assert proc.proc.returncode == 2 and len(lines) == 1, proc.output
        assert lines[0].startswith("pyingress announce: error: ") and message in lines[0]
    finally:
        proc.stop()

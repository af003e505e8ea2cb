"""Throw-away network namespaces joined by a bridge, for ARP tests that never touch the host.

Each namespace is held open by a ``unshare -n sleep`` process; killing it destroys the
namespace and every interface in it. The "switch" namespace holds the bridge; every host gets
one veth whose far end is a bridge port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from tests.support.processes import ManagedProcess, die_with_parent

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def missing_requirements() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "arping", "tcpdump", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2 arping tcpdump util-linux)"
    return None


class Namespace:
    """One network namespace, alive while its holder process lives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sleep", "3600"], start_new_session=True, preexec_fn=die_with_parent
        )
        path = f"/proc/{self.holder.pid}/ns/net"
        # unshare execs sleep only after the namespace exists; wait for that switch.
        for _ in range(1000):
            with contextlib.suppress(OSError):
                if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                    break
            threading.Event().wait(0.005)
        else:
            raise RuntimeError("network namespace did not appear")
        self.pid = self.holder.pid
        self.sh("ip link set lo up")

    def cmd(self, args: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", *args]

    def sh(self, command: str, check: bool = True) -> str:
        done = subprocess.run(self.cmd(command.split()), capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"[{self.name}] {command}: {done.stderr.strip()}")
        return done.stdout

    def spawn(self, args: Sequence[str]) -> ManagedProcess:
        return ManagedProcess(self.cmd(args))

    @staticmethod
    def announce_args(*args: str, standalone: bool = False) -> list[str]:
        """``pyingress announce ARGS``; ``standalone`` uses ``python -m pyingress.announce``,
        the same command without importing the rest of pyingress."""
        if standalone:
            return [sys.executable, "-m", "pyingress.announce", *args]
        return [sys.executable, "-m", "pyingress", "announce", *args]

    def announce(self, *args: str) -> ManagedProcess:
        return self.spawn(self.announce_args(*args))

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` in a thread that lives in this namespace (sockets it opens stay there)."""
        results: queue.Queue[tuple[bool, object]] = queue.Queue()

        def body() -> None:
            fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            try:
                results.put((True, fn()))
            except BaseException as exc:
                results.put((False, exc))

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        ok, value = results.get()
        thread.join()
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    def mac(self, ifname: str = "eth0") -> str:
        out = self.sh(f"ip -br link show {ifname}")
        return out.split()[2].lower()

    def neighbour(self, ip: str, ifname: str = "eth0") -> str | None:
        """The MAC this namespace has for ``ip`` if the entry is usable, else None."""
        out = self.sh(f"ip neigh show {ip} dev {ifname}")
        parts = out.split()
        if "lladdr" in parts and not ({"FAILED", "INCOMPLETE"} & set(parts)):
            return parts[parts.index("lladdr") + 1].lower()
        return None

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.holder.pid, signal.SIGKILL)
        self.holder.wait(10)


class Lab:
    """A bridge in its own namespace plus hosts attached to it on 10.0.0.0/24."""

    def __init__(self) -> None:
        self.switch = Namespace("switch")
        self.hosts: dict[str, Namespace] = {}
        self.switch.sh("ip link add br0 type bridge")
        self.switch.sh("ip link set br0 up")

    def add_host(self, name: str, ip: str) -> Namespace:
        host = Namespace(name)
        port = f"p{len(self.hosts)}"
        self.switch.sh(f"ip link add {port} type veth peer name eth0 netns {host.pid}")
        self.switch.sh(f"ip link set {port} master br0 up")
        host.sh(f"ip addr add {ip}/24 dev eth0")
        host.sh("ip link set eth0 up")
        self.hosts[name] = host
        return host

    def address_switch(self, ip: str) -> None:
        """Give the bridge itself an address, so a server in the switch namespace is reachable."""
        self.switch.sh(f"ip addr add {ip}/24 dev br0")

    def close(self) -> None:
        for host in self.hosts.values():
            host.close()
        self.switch.close()

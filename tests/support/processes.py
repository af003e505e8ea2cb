"""Start a command for a test and make sure it is stopped afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import DEADLINE, free_port, port_open, wait_until

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even if it is killed hard."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """A child process with its output in a temporary file, stopped by :meth:`stop`."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None
    ):
        self.args = list(args)
        self._log = tempfile.NamedTemporaryFile(
            prefix="pyingress-test-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    @property
    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = DEADLINE) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[:3]} exited {self.proc.returncode}:\n{self.output}")
            return port_open(port, host)

        wait_until(ready, timeout, f"{self.args[:3]} to listen on {port}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
        os.unlink(self._log.name)
        return self.proc.returncode


def pyingress(*args: str, env: dict[str, str] | None = None) -> ManagedProcess:
    """Run ``pyingress ARGS`` with this interpreter."""
    return ManagedProcess([sys.executable, "-m", "pyingress", *args], env=env)


def echo_backend(name: str, port: int = 0) -> tuple[ManagedProcess, int]:
    """Start ``pyingress echo --name NAME`` on ``port`` (a free one by default).

    Returns at once with the process and its port; ``process.wait_for_port(port)`` waits
    until it answers, so several backends can start side by side.
    """
    port = port or free_port()
    return pyingress("echo", "--port", str(port), "--name", name), port


@contextlib.contextmanager
def running_echo(name: str) -> Iterator[int]:
    """An ``pyingress echo`` backend named ``name``, answering while the block runs: its port."""
    process, port = echo_backend(name)
    try:
        process.wait_for_port(port)
        yield port
    finally:
        process.stop()


@dataclass
class Served:
    """A running ``pyingress serve --manifests``: the process and its loopback ports."""

    process: ManagedProcess
    http_port: int
    https_port: int
    health_port: int


def serve_manifests(
    folder: Path, *flags: str, http_port: int = 0, env: dict[str, str] | None = None
) -> Served:
    """``pyingress serve --manifests FOLDER FLAGS`` on free loopback ports, returned once
    ``/readyz`` says 200; stopped (its output in the failure) when it never does."""
    http_port = http_port or free_port()
    https_port, health_port = free_port(), free_port()
    process = pyingress(
        "serve", "--manifests", str(folder), "--bind", "127.0.0.1",
        "--http-port", str(http_port), "--https-port", str(https_port),
        "--health-port", str(health_port), *flags, env=env,
    )  # fmt: skip

    def ready() -> bool:
        if process.proc.poll() is not None:
            raise AssertionError(f"serve exited {process.proc.returncode}:\n{process.output}")
        return httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=5).status_code == 200

    try:
        wait_until(ready, what="pyingress serve to be ready")
    except BaseException:
        process.stop()
        raise
    return Served(process, http_port, https_port, health_port)

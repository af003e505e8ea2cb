"""Data-plane benchmark: pyingress and nginx proxying to the same backend, in one run.

Layout (2 cores): the proxies under test are pinned to core 0 and take turns, cell by cell
and round by round (only the one under load is busy); the load generator (wrk) and the
backend (an nginx serving static files, so the backend is never the bottleneck) share core 1.
For each proxy, response size and connection count it prints requests/s, p50 and p99 latency
(of the round with the median requests/s) and the proxy's peak RSS, with pyingress's ratio to
nginx. Only loopback addresses are used.

Run: ``python benchmarks/proxy.py`` (needs ``nginx`` and ``wrk``:
``apt-get install nginx-light wrk``).
``--policies`` adds a run where the route carries five policies: the annotations in
``benchmarks/policies/annotations.yaml`` (the body of a YAML flow mapping) go on the benchmark
Ingress, and ``benchmarks/policies/objects.yaml`` (what they refer to) is served with it.
Every request carries an ``Origin`` header, so the CORS policy has work to do.

Besides the Markdown tables, the last line is a machine-readable summary: ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "bench.local"
ORIGIN = "https://app.bench.local"
SIZES = {"100B": 100, "64KiB": 64 * 1024}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of ``pid`` and its children, in KiB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for each in pids:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


@contextlib.contextmanager
def process(
    args: list[str], core: int, port: int, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["taskset", "-c", str(core), *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def nginx_conf(workdir: Path, body: str) -> Path:
    conf = workdir / f"nginx-{free_port()}.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off;
        master_process off;
        worker_processes 1;
        pid {workdir}/nginx-{conf.stem}.pid;
        error_log {workdir}/{conf.stem}-error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/body;
            proxy_temp_path {workdir}/proxy;
            fastcgi_temp_path {workdir}/fastcgi;
            uwsgi_temp_path {workdir}/uwsgi;
            scgi_temp_path {workdir}/scgi;
            keepalive_requests 1000000;
            {body}
        }}
        """))
    return conf


def backend_conf(workdir: Path, port: int) -> Path:
    docroot = workdir / "www"
    docroot.mkdir(exist_ok=True)
    for name, size in SIZES.items():
        (docroot / name).write_bytes(b"x" * size)
    return nginx_conf(workdir, f"""
        server {{ listen 127.0.0.1:{port}; root {docroot}; }}""")


def proxy_conf(workdir: Path, port: int, backend: int) -> Path:
    return nginx_conf(workdir, f"""
        upstream app {{ server 127.0.0.1:{backend}; keepalive 320; }}
        server {{
            listen 127.0.0.1:{port};
            server_name {HOST};
            location / {{
                proxy_pass http://app;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_set_header Host $host;
                proxy_set_header X-Real-IP $remote_addr;
                proxy_set_header X-Forwarded-For $remote_addr;
                proxy_set_header X-Forwarded-Proto $scheme;
                proxy_buffering off;
            }}
        }}""")


def manifests(workdir: Path, backend: int, policies: Path | None) -> Path:
    folder = workdir / f"manifests-{policies.name if policies else 'plain'}"
    folder.mkdir(exist_ok=True)
    annotations = ""
    if policies is not None:
        lines = (policies / "annotations.yaml").read_text().splitlines()
        # One line, so the flow mapping survives the dedent of the template below.
        kept = [line.strip() for line in lines if not line.strip().startswith("#")]
        annotations = " ".join(line for line in kept if line)
        objects = policies / "objects.yaml"
        if objects.exists():
            shutil.copy(objects, folder / objects.name)
    (folder / "bench.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata:
          name: bench
          namespace: default
          annotations: {{{annotations.strip()}}}
        spec:
          rules:
          - host: {HOST}
            http:
              paths:
              - path: /
                pathType: Prefix
                backend: {{service: {{name: bench, port: {{number: 80}}}}}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: bench, namespace: default}}
        spec: {{ports: [{{name: http, port: 80, targetPort: {backend}}}]}}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: bench-1
          namespace: default
          labels: {{kubernetes.io/service-name: bench}}
        addressType: IPv4
        ports: [{{name: http, port: {backend}, protocol: TCP}}]
        endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
        """))
    return folder


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def to_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, path: str, connections: int, seconds: int) -> Result:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"Host: {HOST}", "-H", f"Origin: {ORIGIN}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "72.50%" in the thread statistics must not read as the 50th percentile.
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    counted = r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)\s*:?\s*(\d+)"
    errors = sum(int(n) for n in re.findall(counted, out))
    return Result(rps, p50, p99, errors)


def wait_ready(health: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait for ``/readyz`` to answer 200: every listener is up and the routes are compiled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", health), 1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    raise RuntimeError("pyingress never became ready")


@dataclass
class Proxy:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    idle_kib: int = 0
    rows: dict[tuple[str, int], list[Result]] | None = None
    """Every round of every cell, in the order run."""


def measure(proxies: list[Proxy], args: argparse.Namespace) -> list[dict]:
    """Every cell for every proxy, ``--rounds`` times, the proxies taking turns within each
    round: a change in the machine's state during the run (another tenant) then lands on all
    of them alike; ratios are taken round by round (:func:`paired`)."""
    time.sleep(1.0)  # let startup work (first compile, certificate load) settle
    for proxy in proxies:
        proxy.idle_kib = rss_kib(proxy.proc.pid, "VmRSS")
        proxy.rows = {}
        run_wrk(proxy.port, "/100B", 10, 2)  # warm-up: connections, pools, caches
    for size in SIZES:
        for connections in args.connections:
            for proxy in proxies:
                assert proxy.rows is not None
                proxy.rows[(size, connections)] = []
            for _ in range(args.rounds):
                for proxy in proxies:
                    assert proxy.rows is not None
                    proxy.rows[(size, connections)].append(
                        run_wrk(proxy.port, f"/{size}", connections, args.seconds))
    return [{"name": proxy.name, "idle_kib": proxy.idle_kib,
             "peak_kib": rss_kib(proxy.proc.pid, "VmHWM"), "rows": proxy.rows}
            for proxy in proxies]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=5,
                        help="runs per cell and proxy; medians are reported")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--policies", action="store_true",
                        help="also run a route with five policies")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"benchmark needs {tool}: apt-get install nginx-light wrk", file=sys.stderr)
            return 2
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pyingress-bench-") as tmp, \
            contextlib.ExitStack() as running:
        workdir = Path(tmp)
        backend = free_port()
        running.enter_context(process(["nginx", "-c", str(backend_conf(workdir, backend))], 1,
                                      backend))  # fmt: skip
        port = free_port()
        nginx = ["nginx", "-c", str(proxy_conf(workdir, port, backend))]
        proxies = [Proxy("nginx", port, running.enter_context(process(nginx, 0, port)))]
        variants: list[tuple[str, Path | None]] = [("pyingress", None)]
        if args.policies:
            variants.append(("pyingress+5 policies", ROOT / "benchmarks" / "policies"))
        for name, policies in variants:
            port, health = free_port(), free_port()
            command = [sys.executable, "-m", "pyingress", "serve", "--manifests",
                       str(manifests(workdir, backend, policies)), "--bind", "127.0.0.1",
                       "--http-port", str(port), "--https-port", str(free_port()),
                       "--health-port", str(health), "--log-level", "warning"]
            proc = running.enter_context(process(command, 0, port, cwd=ROOT))
            wait_ready(health, proc)
            proxies.append(Proxy(name, port, proc))
        runs = measure(proxies, args)
    report(runs, args, load_before, os.getloadavg())
    return 0


def median_round(results: list[Result]) -> Result:
    """The round with the median requests/s (its latencies are the ones shown)."""
    return sorted(results, key=lambda result: result.rps)[len(results) // 2]


def paired(results: list[Result], bases: list[Result]) -> float:
    """The median of the round-by-round requests/s ratios: each round ran both back to back,
    so a slow drift of the machine cancels out."""
    ratios = sorted(result.rps / base.rps for result, base in zip(results, bases, strict=True))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def report(runs: list[dict], args: argparse.Namespace, load_before: tuple[float, ...],
           load_after: tuple[float, ...]) -> None:
    """Markdown tables, then one ``BENCH_JSON`` line for scripts.

    Ratios compare with nginx; for the policies run, ``vs plain`` compares with pyingress
    without policies (the cost of the five policies).
    """
    nginx = runs[0]
    plain = next((run for run in runs if run["name"] == "pyingress"), None)
    print(f"cpu: {os.cpu_count()} cores; proxies pinned to core 0, taking turns per cell; "
          f"wrk + backend on core 1; {args.rounds} rounds of {args.seconds}s per cell (medians; "
          f"ratios paired round by round); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print("| proxy | response | conns | req/s | ratio | p50 ms | p99 ms | p99 ratio | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for run in runs:
        for (size, connections), rounds in run["rows"].items():
            bases = nginx["rows"][(size, connections)]
            row, base = median_round(rounds), median_round(bases)
            ratio = paired(rounds, bases)
            p99_ratio = row.p99_ms / base.p99_ms if base.p99_ms else 0.0
            errors = sum(result.errors for result in rounds)
            print(f"| {run['name']} | {size} | {connections} | {row.rps:,.0f} | "
                  f"{ratio:.2f}x | {row.p50_ms:.2f} | {row.p99_ms:.2f} | "
                  f"{p99_ratio:.1f}x | {errors} |")
            entry = {"proxy": run["name"], "size": size, "connections": connections,
                     "rps": round(row.rps), "ratio": round(ratio, 3),
                     "p50_ms": round(row.p50_ms, 3), "p99_ms": round(row.p99_ms, 3),
                     "p99_ratio": round(p99_ratio, 2), "errors": errors}
            if plain is not None and runs.index(run) > runs.index(plain):
                entry["vs_plain"] = round(paired(rounds, plain["rows"][(size, connections)]), 3)
            summary.append(entry)
    if plain is not None and len(runs) > 2:
        print()
        print("| policies run | response | conns | req/s vs pyingress without policies |")
        print("|---|---|---:|---:|")
        for entry in summary:
            if "vs_plain" in entry:
                print(f"| {entry['proxy']} | {entry['size']} | {entry['connections']} | "
                      f"{entry['vs_plain']:.2f}x |")
    print()
    print("| proxy | idle RSS | peak RSS |")
    print("|---|---:|---:|")
    for run in runs:
        print(f"| {run['name']} | {run['idle_kib'] / 1024:.1f} MiB | "
              f"{run['peak_kib'] / 1024:.1f} MiB |")
    memory = {run["name"]: {"idle_mib": round(run["idle_kib"] / 1024, 1),
                            "peak_mib": round(run["peak_kib"] / 1024, 1)} for run in runs}
    load = [round(load_before[0], 2), round(load_after[0], 2)]
    print("BENCH_JSON " + json.dumps({"seconds": args.seconds, "rounds": args.rounds,
                                      "load": load, "rows": summary,
                                      "memory": memory}, separators=(",", ":")))


if __name__ == "__main__":
    raise SystemExit(main())

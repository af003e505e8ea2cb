"""The quickstart folder compiles cleanly and routes as the README says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Echo, Serve

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
BACKENDS = {  # EndpointSlice port in the quickstart -> echo backend name in run.sh
    18081: "grafana-a", 18082: "grafana-b", 18083: "prometheus", 18084: "argocd",
    18085: "default-backend",
}  # fmt: skip


def test_quickstart_has_no_problems() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyingress", "check", "--manifests", str(QUICKSTART)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("no problems: 4 Ingresses served")


def test_run_script_starts_the_backends_the_manifests_name() -> None:
    script = (QUICKSTART / "run.sh").read_text()
    started = {int(port): name for port, name in re.findall(r"start_echo (\d+) (\S+)", script)}
    assert started == BACKENDS


def test_quickstart_routes(
    tmp_path: Path, echo: Callable[[str], Echo], serve: Callable[..., Serve]
) -> None:
    """The same manifests, with the backends moved to free ports so the test can run anywhere."""
    folder = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, folder, ignore=shutil.ignore_patterns("*.sh", "*.md"))
    moved = {port: echo(name).port for port, name in BACKENDS.items()}
    for manifest in folder.glob("*.yaml"):
        text = manifest.read_text()
        for port, new_port in moved.items():
            text = text.replace(f"port: {port}\n", f"port: {new_port}\n")
        manifest.write_text(text)
    running = serve(folder)
    assert running.backend_name("prometheus.homelab.local") == "prometheus"
    assert running.backend_name("argocd.homelab.local", "/applications") == "argocd"
    assert running.backend_name("unknown.homelab.local") == "default-backend"
    assert running.backend_name("127.0.0.1") == "default-backend"
    grafana = Counter(running.backend_name("grafana.homelab.local") for _ in range(10))
    assert grafana == {"grafana-a": 5, "grafana-b": 5}

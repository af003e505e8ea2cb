"""``pyingress check`` and ``pyingress routes`` on folders of manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.manifests import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    write_manifests,
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyingress", *args], capture_output=True, text=True, timeout=60
    )


def good_folder(folder: Path) -> Path:
    write_manifests(
        folder / "app.yaml",
        ingress_class(),
        service("web", [{"name": "http", "port": 80}]),
        endpoint_slice("web", ["10.0.0.1", "10.0.0.2"], 8080),
        ingress("web", [rule("web.example", path("/", "web"), path("/api", "web", "Exact"))]),
    )
    return folder


def test_check_passes_a_clean_folder(tmp_path: Path) -> None:
    result = run("check", "--manifests", str(good_folder(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "no problems: 1 Ingresses served, 2 routes\n"


def test_check_lists_every_problem_and_exits_one(tmp_path: Path) -> None:
    good_folder(tmp_path)
    (tmp_path / "broken.yaml").write_text("kind: Service\nmetadata:\n  name: x\n  - oops\n")
    write_manifests(
        tmp_path / "more.yaml",
        ingress("orphan", [rule("orphan.example", path("/", "missing"))]),
    )
    result = run("check", "--manifests", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("broken.yaml:4: error: InvalidYAML: ")
    assert lines[1].startswith("error: Ingress default/orphan: ServiceNotFound: ")


def test_check_missing_folder_is_a_startup_error(tmp_path: Path) -> None:
    result = run("check", "--manifests", str(tmp_path / "none"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pyingress check: error: --manifests: {tmp_path / 'none'} is not a folder"
    ]


def test_routes_prints_an_aligned_table(tmp_path: Path) -> None:
    result = run("routes", "--manifests", str(good_folder(tmp_path)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "PATH", "TYPE", "INGRESS", "SERVICE", "ENDPOINTS"]
    rows = [line.split() for line in lines[1:]]
    endpoints = "10.0.0.1:8080,10.0.0.2:8080"
    assert rows == [
        ["web.example", "/api", "Exact", "default/web", "default/web:80", endpoints],
        ["web.example", "/", "Prefix", "default/web", "default/web:80", endpoints],
    ]
    column = lines[0].index("PATH")
    assert all(line[column - 2 : column] == "  " for line in lines), "columns are aligned"

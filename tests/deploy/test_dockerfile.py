"""The Dockerfile lints clean and its builder step really produces an installable wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_passes_hadolint(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install pyingress\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


def test_final_image_runs_unprivileged_with_the_cli() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[-1] == "FROM python:3.11-slim"
    final = lines[lines.index(stages[-1]):]
    user = next(line for line in final if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert 'ENTRYPOINT ["pyingress"]' in final
    assert 'CMD ["serve", "--in-cluster"]' in final
    assert not any(tool in line for line in final for tool in ("gcc", "build-essential"))


def test_builder_step_makes_a_wheel_with_the_package(tmp_path: Path) -> None:
    """What the builder stage copies and runs, done here: the wheel holds the package."""
    source = tmp_path / "src"
    source.mkdir()
    builder = DOCKERFILE.read_text().split("\nFROM ", 2)[1]
    for line in builder.splitlines():
        if line.startswith("COPY "):
            *paths, _destination = line.split()[1:]
            for name in paths:
                assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which is missing"
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, source / name,
                                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
                else:
                    shutil.copy(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("pyingress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pyingress/sources/kube.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pyingress = pyingress.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

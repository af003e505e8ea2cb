"""Fixtures for the manifest-folder source: a folder in tmp_path and helpers to write into it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pyingress.sources.store import ObjectStore

Write = Callable[[str, str], Path]


def service(name: str, namespace: str = "default", port: int = 80) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  ports:
  - port: {port}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


@pytest.fixture
def write(folder: Path) -> Write:
    """Write ``text`` to ``name`` in the folder atomically (as editors and ConfigMaps do)."""

    def write(name: str, text: str) -> Path:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, target)
        return target

    return write


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore()

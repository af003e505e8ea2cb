"""A folder of YAML manifests as a source of objects, reloaded when the files change.

Each file contributes a set of objects. A change to a file replaces exactly that file's
contribution in one store batch, so a snapshot never shows half of a file. A file that cannot
be read or parsed is reported with its line and keeps its last good objects: a typo while
editing never takes a route down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchfiles
import yaml

from pyingress.model import KINDS, KubeObject, ObjectRef, ref_of
from pyingress.model.problems import Severity
from pyingress.sources.store import ObjectStore

log = logging.getLogger("pyingress.sources.files")

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Larger files are refused rather than parsed: a manifest folder is not a data dump."""

Signature = tuple[int, int, int]
"""``(inode, size, mtime_ns)`` of a file's target; a change means "read it again"."""


class ManifestError(Exception):
    """A file, or one document in it, that cannot become objects."""

    def __init__(self, reason: str, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class FileProblem:
    """What is wrong with one manifest file, located by line (1-based; 0 when unknown)."""

    file: str
    line: int
    reason: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity.value}: {self.reason}: {self.message}"


@dataclass(slots=True)
class FileState:
    """What one file last contributed; kept as is when the file turns bad."""

    signature: Signature | None
    objects: dict[ObjectRef, KubeObject] = field(default_factory=dict)
    lines: dict[ObjectRef, int] = field(default_factory=dict)
    problems: list[FileProblem] = field(default_factory=list)


def parse_manifests(text: str) -> Iterator[tuple[int, KubeObject]]:
    """Every object of a known kind in a multi-document YAML text, with its line.

    ``List`` documents are unpacked. Raises :class:`ManifestError` on the first document that
    is not valid YAML, not a mapping, or lacks ``kind`` or ``metadata.name``.
    """
    loader = yaml.SafeLoader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                data = loader.construct_document(node) if node is not None else None
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else 0
                raise ManifestError("InvalidYAML", _yaml_message(exc), line) from None
            except yaml.YAMLError as exc:
                raise ManifestError("InvalidYAML", str(exc).strip()) from None
            if data is None:
                continue
            assert node is not None
            yield from _objects_of(data, node.start_mark.line + 1)
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    message = str(exc.problem or "invalid YAML")
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return message


def _objects_of(data: Any, line: int) -> Iterator[tuple[int, KubeObject]]:
    if not isinstance(data, dict):
        raise ManifestError(
            "NotAnObject", f"document is a {type(data).__name__}, not a mapping", line
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError("MissingKind", "object has no kind", line)
    if kind == "List" or (kind.endswith("List") and kind[: -len("List")] in KINDS):
        items = data.get("items") or []
        if not isinstance(items, list):
            raise ManifestError("InvalidList", f"{kind} items is not a list", line)
        item_kind = kind[: -len("List")]
        for item in items:
            if isinstance(item, dict) and "kind" not in item and item_kind:
                item = {**item, "kind": item_kind}
            yield from _objects_of(item, line)
        return
    if kind not in KINDS:
        return
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise ManifestError("MissingName", f"{kind} has no metadata.name", line)
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if namespace is not None and not isinstance(namespace, str):
        raise ManifestError("InvalidNamespace", f"{kind} {name}: metadata.namespace", line)
    yield line, data


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ManifestSource:
    """Keeps the store equal to the objects in the manifest files under ``folder``.

    Files and folders whose names start with ``.`` are skipped: editors' temporary files, and
    the ``..data`` links of a mounted ConfigMap (the visible names point through them).
    """

    def __init__(self, folder: str | os.PathLike[str], store: ObjectStore) -> None:
        self.folder = Path(folder)
        self.store = store
        self.synced = asyncio.Event()
        """Set once every file present at start has been loaded into the store."""
        self._files: dict[Path, FileState] = {}
        self._stop = asyncio.Event()

    @property
    def problems(self) -> list[FileProblem]:
        """Every current problem, by file then line."""
        found = [p for state in self._files.values() for p in state.problems]
        return sorted(found, key=lambda p: (p.file, p.line))

    def check_folder(self) -> None:
        """Raise :class:`ManifestError` if the folder cannot be listed (a startup error)."""
        if not self.folder.is_dir():
            raise ManifestError("FolderNotFound", f"{self.folder} is not a folder")
        try:
            next(iter(os.scandir(self.folder)), None)
        except OSError as exc:
            raise ManifestError("FolderUnreadable", f"{self.folder}: {exc.strerror}") from None

    def load(self) -> bool:
        """Bring the store up to date with the folder; returns whether anything changed.

        Only files that appeared, vanished or whose signature changed are read again, so a
        full rescan after every change costs a ``stat`` per file.
        """
        if not self.folder.is_dir():
            log.warning("manifest folder missing folder=%s; keeping the last objects", self.folder)
            return False
        present = dict(self._scan())
        changed_paths = [p for p, sig in present.items() if self._signature_of(p) != sig]
        gone = [p for p in self._files if p not in present]
        if not changed_paths and not gone:
            return False
        before = {ref for state in self._files.values() for ref in state.objects}
        for path in gone:
            del self._files[path]
        for path in changed_paths:
            self._read(path, present[path])
        return self._apply(before)

    def _signature_of(self, path: Path) -> Signature | None:
        state = self._files.get(path)
        return state.signature if state is not None else None

    def _scan(self) -> Iterator[tuple[Path, Signature]]:
        for root, dirs, files in os.walk(self.folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not name.endswith(SUFFIXES):
                    continue
                path = Path(root, name)
                signature = _signature(path)
                if signature is not None:
                    yield path, signature

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.folder))
        except ValueError:
            return str(path)

    def _read(self, path: Path, signature: Signature) -> None:
        state = self._files.setdefault(path, FileState(signature=None))
        state.signature = signature
        name = self._relative(path)
        try:
            objects, lines = self._parse(path)
        except ManifestError as exc:
            problem = FileProblem(name, exc.line, exc.reason, exc.message)
            if problem not in state.problems:
                log.warning(
                    "manifest rejected file=%s line=%d reason=%s detail=%r kept_objects=%d",
                    name, exc.line, exc.reason, exc.message, len(state.objects),
                )  # fmt: skip
            state.problems = [problem]
            return
        if state.problems:
            log.info("manifest accepted again file=%s objects=%d", name, len(objects))
        state.objects, state.lines, state.problems = objects, lines, []

    @staticmethod
    def _parse(path: Path) -> tuple[dict[ObjectRef, KubeObject], dict[ObjectRef, int]]:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ManifestError("Unreadable", exc.strerror or str(exc)) from None
        if len(raw) > MAX_FILE_BYTES:
            raise ManifestError("TooLarge", f"file is larger than {MAX_FILE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError("NotUTF8", f"byte {exc.start} is not UTF-8") from None
        objects: dict[ObjectRef, KubeObject] = {}
        lines: dict[ObjectRef, int] = {}
        for line, obj in parse_manifests(text):
            ref = ref_of(obj)
            if ref in objects:
                raise ManifestError(
                    "DuplicateObject", f"{ref} is also defined at line {lines[ref]}", line
                )
            objects[ref], lines[ref] = obj, line
        return objects, lines

    def _apply(self, before: set[ObjectRef]) -> bool:
        """One store batch: the union of every file's objects replaces what was there."""
        merged: dict[ObjectRef, KubeObject] = {}
        owner: dict[ObjectRef, Path] = {}
        for path in sorted(self._files):
            state = self._files[path]
            reported = {p for p in state.problems if p.reason == "DefinedTwice"}
            state.problems = [p for p in state.problems if p not in reported]
            for ref, obj in state.objects.items():
                if ref in merged:
                    self._report_twice(path, ref, owner[ref], reported)
                    continue
                merged[ref], owner[ref] = obj, path
        return self.store.update(merged.values(), before - merged.keys())

    def _report_twice(
        self, path: Path, ref: ObjectRef, first: Path, reported: set[FileProblem]
    ) -> None:
        state = self._files[path]
        problem = FileProblem(
            self._relative(path),
            state.lines.get(ref, 0),
            "DefinedTwice",
            f"{ref} is ignored here: {self._relative(first)} defines it first",
            Severity.WARNING,
        )
        if problem not in reported:
            log.warning("manifest duplicate %s", problem)
        state.problems.append(problem)

    async def run(
        self, *, debounce_ms: int = 200, step_ms: int = 20, resync_s: float = 30.0
    ) -> None:
        """Load the folder, set :attr:`synced`, then follow changes until :meth:`stop`.

        Besides file events, the folder is rescanned every ``resync_s`` seconds (a ``stat``
        per file), which also covers changes made before the watch started and file systems
        that send no events.
        """
        self.load()
        self.synced.set()
        while not self._stop.is_set():
            try:
                async for _ in watchfiles.awatch(
                    self.folder,
                    watch_filter=None,
                    debounce=debounce_ms,
                    step=step_ms,
                    stop_event=self._stop,
                    rust_timeout=int(resync_s * 1000),
                    yield_on_timeout=True,
                ):
                    self.load()
            except (OSError, RuntimeError) as exc:
                log.warning("manifest watch failed folder=%s error=%r; retrying", self.folder, exc)
                await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def stop(self) -> None:
        self._stop.set()


def load_folder(folder: str | os.PathLike[str]) -> tuple[ObjectStore, list[FileProblem]]:
    """Read a folder once (``check``, ``routes``): the filled store and the file problems."""
    store = ObjectStore()
    source = ManifestSource(folder, store)
    source.check_folder()
    source.load()
    return store, source.problems

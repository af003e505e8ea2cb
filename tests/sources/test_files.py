"""The manifest folder source, against real files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pyingress.model import ObjectRef
from pyingress.sources.files import ManifestError, ManifestSource, load_folder
from pyingress.sources.store import ObjectStore
from tests.sources.conftest import Write, service
from tests.support.net import wait_until_async


def svc(name: str, namespace: str = "default") -> ObjectRef:
    return ObjectRef("Service", namespace, name)


def test_multi_document_file_loads_every_known_object(write: Write, folder: Path) -> None:
    write(
        "app.yaml",
        service("a") + "---\n" + service("b", "apps") + "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n",
    )
    store, problems = load_folder(folder)
    assert problems == []
    assert store.refs() == {svc("a"), svc("b", "apps")}


def test_list_items_are_unpacked(write: Write, folder: Path) -> None:
    write(
        "list.yml",
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: one}}\n"
        "- {apiVersion: v1, kind: Secret, metadata: {name: two, namespace: x}}\n"
        "---\n"
        "apiVersion: v1\nkind: ServiceList\nitems:\n- {metadata: {name: three}}\n",
    )
    store, problems = load_folder(folder)
    assert problems == []
    assert store.refs() == {svc("one"), ObjectRef("Secret", "x", "two"), svc("three")}


def test_nested_folders_are_read_and_hidden_and_other_files_skipped(
    write: Write, folder: Path
) -> None:
    write("sub/deeper/x.yaml", service("nested"))
    write(".hidden.yaml", service("hidden"))
    write("..data/y.yaml", service("configmap-internal"))
    write("notes.txt", service("text"))
    store, _ = load_folder(folder)
    assert store.refs() == {svc("nested")}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (service("ok") + "---\nkind: Service\nmetadata:\n  name: a: b\n", 12, "InvalidYAML"),
        (service("ok") + "---\nkind: Service\nmetadata: {name: [x\n", 12, "InvalidYAML"),
        (service("ok") + "---\n- just\n- a list\n", 10, "NotAnObject"),
        (service("ok") + "---\nmetadata: {name: x}\n", 10, "MissingKind"),
        (service("ok") + "---\nkind: Service\nmetadata: {namespace: x}\n", 10, "MissingName"),
        (service("ok") + "---\n" + service("ok"), 10, "DuplicateObject"),
    ],
)
def test_bad_document_is_reported_with_its_line(
    write: Write, folder: Path, text: str, line: int, reason: str
) -> None:
    write("bad.yaml", text)
    store, problems = load_folder(folder)
    assert [(p.file, p.line, p.reason) for p in problems] == [("bad.yaml", line, reason)]
    assert str(problems[0]).startswith(f"bad.yaml:{line}: error: {reason}: ")
    assert store.refs() == set(), "a bad file contributes nothing until it is fixed"


def test_parse_error_keeps_the_last_good_objects(write: Write, folder: Path) -> None:
    store = ObjectStore()
    source = ManifestSource(folder, store)
    write("app.yaml", service("a", port=80) + "---\n" + service("b"))
    assert source.load()
    good = store.get(svc("a"))
    write("app.yaml", service("a", port=81) + "---\nkind: Service\n  bad: indent\n")
    assert not source.load(), "a broken file must not change the store"
    assert store.get(svc("a")) == good
    assert store.refs() == {svc("a"), svc("b")}
    [problem] = source.problems
    assert (problem.file, problem.line, problem.reason) == ("app.yaml", 11, "InvalidYAML")
    write("app.yaml", service("a", port=81))
    assert source.load()
    assert source.problems == []
    assert store.refs() == {svc("a")}
    assert store.get(svc("a"))["spec"]["ports"][0]["port"] == 81  # type: ignore[index]


def test_deleted_file_removes_its_objects_only(write: Write, folder: Path) -> None:
    store = ObjectStore()
    source = ManifestSource(folder, store)
    first = write("one.yaml", service("one"))
    write("two.yaml", service("two"))
    source.load()
    first.unlink()
    assert source.load()
    assert store.refs() == {svc("two")}


def test_rename_keeps_objects_and_a_non_manifest_name_drops_them(
    write: Write, folder: Path
) -> None:
    store = ObjectStore()
    source = ManifestSource(folder, store)
    write("one.yaml", service("one"))
    source.load()
    versions = store.version
    os.rename(folder / "one.yaml", folder / "renamed.yml")
    source.load()
    assert store.refs() == {svc("one")}
    assert store.version == versions, "a rename alone changes no object"
    os.rename(folder / "renamed.yml", folder / "renamed.yml.disabled")
    assert source.load()
    assert store.refs() == set()


def test_object_defined_in_two_files_survives_deleting_one(write: Write, folder: Path) -> None:
    store = ObjectStore()
    source = ManifestSource(folder, store)
    first = write("a.yaml", service("same", port=1))
    write("b.yaml", service("same", port=2))
    source.load()
    [problem] = source.problems
    assert (problem.file, problem.reason) == ("b.yaml", "DefinedTwice")
    assert problem.severity.value == "warning"
    assert store.get(svc("same"))["spec"]["ports"][0]["port"] == 1  # type: ignore[index]
    first.unlink()
    source.load()
    assert store.get(svc("same"))["spec"]["ports"][0]["port"] == 2  # type: ignore[index]
    assert source.problems == []


def test_missing_folder_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is not a folder"):
        load_folder(tmp_path / "nope")


def test_vanished_folder_keeps_the_objects(write: Write, folder: Path) -> None:
    store = ObjectStore()
    source = ManifestSource(folder, store)
    write("one.yaml", service("one"))
    source.load()
    (folder / "one.yaml").unlink()
    folder.rmdir()
    assert not source.load()
    assert store.refs() == {svc("one")}


async def test_watch_applies_changes_and_sets_synced(write: Write, folder: Path) -> None:
    store = ObjectStore()
    batches: list[set[ObjectRef]] = []
    store.subscribe(lambda: batches.append(store.refs()))
    write("one.yaml", service("one"))
    source = ManifestSource(folder, store)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 10)
        assert store.refs() == {svc("one")}

        async def has(refs: set[ObjectRef]) -> bool:
            return store.refs() == refs

        # The watcher starts in a thread; rewrite until it reports (bounded by the deadline).
        async def picks_up_new_file() -> bool:
            write("two.yaml", service("two") + f"# {len(batches)}\n")
            return await has({svc("one"), svc("two")})

        await wait_until_async(picks_up_new_file, what="new file loaded")
        (folder / "one.yaml").unlink()
        await wait_until_async(lambda: has({svc("two")}), what="deleted file dropped")
        write("two.yaml", "kind: Service\nmetadata: [\n")
        await wait_until_async(
            lambda: asyncio.sleep(0, bool(source.problems)), what="problem reported"
        )
        assert store.refs() == {svc("two")}
    finally:
        source.stop()
        await asyncio.wait_for(task, 10)

"""The reconciler and the health app in-process: real store, compiler, uvicorn and sockets."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import httpx
import pytest

from pyingress.controller import Reconciler
from pyingress.model import Problem
from pyingress.observability.health import HealthServer, Readiness, bind_socket, health_app
from pyingress.observability.logs import setup_logging
from pyingress.observability.metrics import RouteTableMetrics, create_registry
from pyingress.routing.compiler import CompileOptions
from pyingress.routing.table import TableHolder
from pyingress.sources.files import ManifestSource
from pyingress.sources.store import ObjectStore
from tests.support.manifests import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    write_manifests,
)
from tests.support.net import wait_until_async


def web_objects(host: str = "web.example") -> list[dict[str, object]]:
    return [
        ingress_class(),
        service("web", [{"name": "http", "port": 80}]),
        endpoint_slice("web", ["10.0.0.1"], 8080),
        ingress("web", [rule(host, path("/", "web"))]),
    ]


async def test_reconciler_publishes_each_change_with_a_new_generation() -> None:
    store, holder = ObjectStore(), TableHolder()
    registry = create_registry()
    reconciler = Reconciler(store, holder, CompileOptions(), RouteTableMetrics(registry))
    task = asyncio.create_task(reconciler.run())
    try:
        store.update(web_objects())
        await reconciler.wait_compiled(store.version)
        first = holder.table
        assert first.match("web.example", "/") is not None
        store.update(web_objects("other.example"))
        await reconciler.wait_compiled(store.version)
        assert holder.table.generation > first.generation
        assert holder.table.match("other.example", "/") is not None
        assert holder.table.match("web.example", "/") is None, "the Ingress moved host"
        assert registry.get_sample_value("pyingress_route_table_routes") == 1
        success = registry.get_sample_value(
            "pyingress_route_table_reloads_total", {"result": "success"}
        )
        assert success is not None and success >= 2
    finally:
        task.cancel()


async def test_reconciler_coalesces_a_burst_into_few_compiles() -> None:
    store, holder = ObjectStore(), TableHolder()
    reconciler = Reconciler(store, holder, CompileOptions())
    task = asyncio.create_task(reconciler.run())
    try:
        await reconciler.wait_compiled(store.version)
        before = holder.table.generation
        for n in range(50):  # no await in between: one burst
            new = ingress(f"i{n}", [rule(f"h{n}.example", path("/", "x"))])
            store.update([ingress_class(), new])
        await reconciler.wait_compiled(store.version)
        assert holder.table.generation - before == 1, "a burst compiles once, at the end"
        assert holder.table.match("h49.example", "/") is not None
    finally:
        task.cancel()


async def test_problems_are_kept_reported_once_and_cleared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, holder = ObjectStore(), TableHolder()
    reconciler = Reconciler(store, holder, CompileOptions(watch_ingress_without_class=True))
    seen: list[list[Problem]] = []
    reconciler.on_problems(seen.append)
    task = asyncio.create_task(reconciler.run())
    broken = ingress("broken", [rule("b.example", path("/", "missing"))], class_name=None)
    try:
        with caplog.at_level(logging.INFO, "pyingress.controller"):
            store.update([broken])
            await reconciler.wait_compiled(store.version)
            other = ingress("other", [rule("u.example", path("/", "gone"))], class_name=None)
            store.update([other])
            await reconciler.wait_compiled(store.version)
            store.update(deletes=[ref for ref in store.refs()])
            await reconciler.wait_compiled(store.version)
        assert reconciler.problems == []
        assert [len(problems) for problems in seen] == [1, 2, 0]
        logged = [r.getMessage() for r in caplog.records if "default/broken" in r.getMessage()]
        assert len(logged) == 2, logged
        assert logged[0].startswith("problem kind=Ingress object=default/broken reason=")
        assert logged[1].startswith("problem resolved kind=Ingress object=default/broken")
    finally:
        task.cancel()


async def test_readyz_follows_readiness_and_metrics_are_exposed() -> None:
    readiness = Readiness("source", "routes")
    registry = create_registry()
    RouteTableMetrics(registry)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = HealthServer(health_app(readiness, registry), sock)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert "source, routes" in response.text
            readiness.done("source")
            readiness.done("routes")
            assert (await client.get("/readyz")).status_code == 200
            readiness.undo("shutdown")
            assert (await client.get("/readyz")).status_code == 503
            metrics = await client.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "pyingress_route_table_reload_duration_seconds_count 0.0" in metrics.text
            assert (await client.get("/other")).status_code == 404
    finally:
        await server.close()


async def test_files_to_table_end_to_end_in_process(tmp_path: Path) -> None:
    store, holder = ObjectStore(), TableHolder()
    source = ManifestSource(tmp_path, store)
    reconciler = Reconciler(store, holder, CompileOptions(watch_ingress_without_class=True))
    write_manifests(tmp_path / "web.yaml", *web_objects())
    tasks = [asyncio.create_task(source.run()), asyncio.create_task(reconciler.run())]
    try:
        await source.synced.wait()
        await reconciler.wait_compiled(store.version)
        assert holder.table.match("web.example", "/") is not None

        async def moved() -> bool:
            return holder.table.match("moved.example", "/") is not None

        write_manifests(tmp_path / "web.yaml", *web_objects("moved.example"))
        await wait_until_async(moved, what="moved host live")
        assert holder.table.match("web.example", "/") is None
    finally:
        source.stop()
        for task in tasks:
            task.cancel()


def test_log_lines_are_single_key_value_lines() -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    try:
        logging.getLogger("pyingress.test").warning("event value=%r", "two\nlines")
        logging.getLogger("pyingress.test").debug("hidden")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("pyingress.test").exception("failed")
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert " level=warning logger=pyingress.test event value='two\\nlines'" in lines[0]
    assert lines[1].startswith("ts=") and "level=error" in lines[1] and "boom" in lines[1]
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("loud")


async def test_large_snapshots_compile_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import pyingress.controller as controller
    from pyingress.routing.compiler import compile_routes

    threads: list[int] = []

    def recording(*args: object) -> object:
        threads.append(threading.get_ident())
        return compile_routes(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(controller, "EXECUTOR_THRESHOLD", 0)
    monkeypatch.setattr(controller, "compile_routes", recording)
    store, holder = ObjectStore(), TableHolder()
    reconciler = Reconciler(store, holder, CompileOptions())
    store.update(web_objects())
    assert await reconciler.reconcile()
    assert threads and threads[0] != threading.get_ident()
    assert holder.table.match("web.example", "/") is not None


async def test_failed_compile_keeps_the_previous_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyingress.controller as controller

    store, holder = ObjectStore(), TableHolder()
    registry = create_registry()
    reconciler = Reconciler(store, holder, CompileOptions(), RouteTableMetrics(registry))
    store.update(web_objects())
    assert await reconciler.reconcile()
    live = holder.table

    def broken(*args: object) -> object:
        raise RuntimeError("compiler bug")

    monkeypatch.setattr(controller, "compile_routes", broken)
    store.update(web_objects("other.example"))
    assert not await reconciler.reconcile()
    assert holder.table is live
    errors = registry.get_sample_value("pyingress_route_table_reloads_total", {"result": "error"})
    assert errors == 1

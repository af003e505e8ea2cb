"""The reconciler: store changes in, a freshly compiled route table published out.

Changes are coalesced: a burst of store updates while a compile is running causes exactly one
more compile, of the latest state. There is never more than one compile in flight, and a
failed compile keeps the previous table (traffic is never served by a half-built table).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pyingress.model import Problem, Severity
from pyingress.observability.metrics import RouteTableMetrics
from pyingress.routing.compiler import CompileOptions, CompileResult, compile_routes
from pyingress.routing.table import RouteTable, TableHolder
from pyingress.sources.store import ObjectStore

log = logging.getLogger("pyingress.controller")

ProblemsObserver = Callable[[list[Problem]], None]

EXECUTOR_THRESHOLD = 2000
"""Above this many Ingresses, compile in a thread so the proxy keeps serving meanwhile."""


class Reconciler:
    """Compiles the store into the :class:`TableHolder` whenever the store changes.

    The store's listener is called from the event loop's thread (every source runs there).
    """

    def __init__(
        self,
        store: ObjectStore,
        holder: TableHolder,
        options: CompileOptions,
        metrics: RouteTableMetrics | None = None,
    ) -> None:
        self.store = store
        self.holder = holder
        self.options = options
        self.metrics = metrics
        self.problems: list[Problem] = []
        """The problems of the last successful compile, for ``check`` and Events."""
        self.compiled_version = -1
        """The store version the live table was compiled from (-1: none yet)."""
        self._observers: list[ProblemsObserver] = []
        self._dirty = asyncio.Event()
        self._compiled = asyncio.Condition()
        store.subscribe(self._dirty.set)

    def on_problems(self, callback: ProblemsObserver) -> None:
        """Call ``callback(problems)`` after each compile whose problem list changed."""
        self._observers.append(callback)

    async def run(self) -> None:
        """Compile now, then again after every change, until cancelled."""
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.reconcile()

    async def reconcile(self) -> bool:
        """Compile the store's current state and publish it; returns whether that worked."""
        version = self.store.version
        snapshot = self.store.snapshot()
        started = time.perf_counter()
        try:
            if len(snapshot.of_kind("Ingress")) > EXECUTOR_THRESHOLD:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, compile_routes, snapshot, self.options)
            else:
                result = compile_routes(snapshot, self.options)
        except Exception:
            log.exception("compile failed; keeping the previous route table")
            if self.metrics is not None:
                self.metrics.reloads.labels("error").inc()
            return False
        self._publish(result, version, time.perf_counter() - started)
        async with self._compiled:
            self._compiled.notify_all()
        return True

    async def wait_compiled(self, version: int) -> None:
        """Return once a table compiled from store version ``version`` or later is live."""
        async with self._compiled:
            await self._compiled.wait_for(lambda: self.compiled_version >= version)

    def _publish(self, result: CompileResult, version: int, elapsed: float) -> None:
        table = result.table
        table.generation = self.holder.table.generation + 1
        self.holder.publish(table)
        self.compiled_version = version
        self._update_problems(result.problems)
        routes = _count_routes(table)
        log.debug(
            "route table published generation=%d routes=%d problems=%d seconds=%.4f",
            table.generation, routes, len(result.problems), elapsed,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.reloads.labels("success").inc()
            self.metrics.reload_duration.observe(elapsed)
            self.metrics.routes.set(routes)
            self.metrics.generation.set(table.generation)
            self.metrics.last_reload.set(time.time())
            for severity in Severity:
                count = sum(1 for p in result.problems if p.severity is severity)
                self.metrics.problems.labels(severity.value).set(count)

    def _update_problems(self, problems: list[Problem]) -> None:
        before, after = set(self.problems), set(problems)
        for problem in problems:
            if problem not in before:
                level = logging.ERROR if problem.severity is Severity.ERROR else logging.WARNING
                log.log(
                    level, "problem kind=%s object=%s reason=%s detail=%r",
                    problem.ref.kind, problem.ref.namespaced_name, problem.reason, problem.message,
                )  # fmt: skip
        for problem in self.problems:
            if problem not in after:
                log.info(
                    "problem resolved kind=%s object=%s reason=%s",
                    problem.ref.kind, problem.ref.namespaced_name, problem.reason,
                )  # fmt: skip
        changed = before != after
        self.problems = list(problems)
        if changed:
            for observer in self._observers:
                try:
                    observer(self.problems)
                except Exception:
                    log.exception("problem observer failed")


def _count_routes(table: RouteTable) -> int:
    return sum(1 for _ in table.routes())

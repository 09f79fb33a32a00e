"""The registry of benchmarked systems.

A system is one small function ``run(job) -> Measurement`` registered with :func:`register`; it
builds the workload's DAG through ``job.build(call)`` and times it. Imports happen inside the
function, so a missing or incomplete package only makes that system "n/a". To add a system,
add one function, e.g.::

    @register("asyncflow_graph-dask", modules=("asyncflow_graph", "distributed"))
    def afg_dask(job: Job) -> Measurement:
        return run_asyncflow("asyncflow_graph", job, lambda m: m.DaskExecutionBackend())
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from types import ModuleType
from typing import Any, TypeVar

from benchmarks.tasks import ai_step, astep, step
from benchmarks.workloads import Call, Workload

T = TypeVar("T")


class Unsupported(Exception):
    """The system has no equivalent of this workload (reported as "n/a")."""


@dataclass(frozen=True)
class Job:
    """One workload at one size."""

    workload: Workload
    n: int

    def build(self, call: Call) -> list[Any]:
        return self.workload.build(call, self.n)


@dataclass(frozen=True)
class Measurement:
    """What a system function returns; times in seconds."""

    elapsed_s: float
    results: list[Any] | None = None
    setup_s: float = 0.0
    teardown_s: float = 0.0


RunFn = Callable[[Job], Measurement]


@dataclass(frozen=True)
class System:
    """A registered system. ``executes``: its default backend really runs the task bodies;
    ``ai_noop``: its "ai" backend is a no-op (so result checks are skipped for W4);
    ``max_tasks``: larger runs are skipped."""

    name: str
    run: RunFn
    modules: Sequence[str]
    compile: RunFn | None
    executes: bool
    ai_noop: bool
    max_tasks: int | None

    def function_for(self, workload: Workload) -> RunFn:
        if workload.kind == "run":
            return self.run
        if self.compile is None:
            raise Unsupported("no separate graph build/compile step")
        return self.compile

    def checks_results(self, workload: Workload) -> bool:
        return self.executes and not (workload.uses_ai and self.ai_noop)


SYSTEMS: dict[str, System] = {}


def register(
    name: str,
    *,
    modules: Sequence[str] = (),
    compile: RunFn | None = None,
    executes: bool = True,
    ai_noop: bool = False,
    max_tasks: int | None = None,
) -> Callable[[RunFn], RunFn]:
    """Register ``run`` as system ``name``; ``modules`` are reported with their versions.
    Sizes above ``max_tasks`` are skipped (for systems known to exceed the time bound there)."""

    def add(run: RunFn) -> RunFn:
        SYSTEMS[name] = System(name, run, tuple(modules), compile, executes, ai_noop, max_tasks)
        return run

    return add


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = perf_counter()
    value = fn()
    return perf_counter() - start, value


async def timed_async(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = perf_counter()
    value = await fn()
    return perf_counter() - start, value


# --- raw asyncio: the floor ------------------------------------------------------------------


async def _floor_task(*deps: asyncio.Future[Any]) -> int:
    return step(*[await dep for dep in deps])


def _floor_call(_stage: str, *deps: asyncio.Future[Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(_floor_task(*deps))


async def _floor_main(job: Job) -> Measurement:
    async def build_and_gather() -> list[Any]:
        return list(await asyncio.gather(*job.build(_floor_call)))

    elapsed, results = await timed_async(build_and_gather)
    return Measurement(elapsed, results)


@register("asyncio-floor")
def asyncio_floor(job: Job) -> Measurement:
    return asyncio.run(_floor_main(job))


# --- AsyncFlow API (radical.asyncflow and asyncflow_graph) ----------------------------------

BackendFactory = Callable[[ModuleType], Any]


async def _create_engine(mod: ModuleType, factory: BackendFactory, with_ai: bool) -> Any:
    backend = factory(mod)
    if inspect.isawaitable(backend):
        backend = await backend
    backends = [backend, mod.NoopExecutionBackend(name="ai")] if with_ai else [backend]
    return await mod.WorkflowEngine.create(backend=backends)


async def _asyncflow_main(module: str, job: Job, factory: BackendFactory) -> Measurement:
    mod = importlib.import_module(module)
    setup_s, flow = await timed_async(lambda: _create_engine(mod, factory, job.workload.uses_ai))
    stages = {"step": flow.function_task(astep)}
    if job.workload.uses_ai:
        stages["ai"] = flow.function_task(backend="ai")(ai_step)

    async def build_and_gather() -> list[Any]:
        sinks = job.build(lambda stage, *deps: stages[stage](*deps))
        return list(await asyncio.gather(*sinks))

    elapsed, results = await timed_async(build_and_gather)
    teardown_s, _ = await timed_async(flow.shutdown)
    return Measurement(elapsed, results, setup_s, teardown_s)


def run_asyncflow(module: str, job: Job, factory: BackendFactory) -> Measurement:
    """Run ``job`` through the AsyncFlow API of ``module`` (eager: build all, then gather)."""
    return asyncio.run(_asyncflow_main(module, job, factory))


@register("radical-asyncflow-local", modules=("radical.asyncflow",), ai_noop=True)
def radical_local(job: Job) -> Measurement:
    return run_asyncflow("radical.asyncflow", job, lambda m: m.LocalExecutionBackend())


@register("radical-asyncflow-noop", modules=("radical.asyncflow",), executes=False)
def radical_noop(job: Job) -> Measurement:
    return run_asyncflow("radical.asyncflow", job, lambda m: m.NoopExecutionBackend())


def compile_asyncflow_graph(job: Job) -> Measurement:
    """W5 through the script face: module-level decorator builds unbound nodes, then
    ``asyncflow_graph.compile(*nodes)`` returns a Plan; nothing runs."""
    afg = importlib.import_module("asyncflow_graph")
    task = afg.function_task(astep)
    elapsed, _ = timed(lambda: afg.compile(*job.build(lambda _stage, *deps: task(*deps))))
    return Measurement(elapsed)


@register(
    "asyncflow_graph-local",
    modules=("asyncflow_graph",),
    ai_noop=True,
    compile=compile_asyncflow_graph,
)
def afg_local(job: Job) -> Measurement:
    return run_asyncflow("asyncflow_graph", job, lambda m: m.LocalExecutionBackend())


@register("asyncflow_graph-noop", modules=("asyncflow_graph",), executes=False)
def afg_noop(job: Job) -> Measurement:
    return run_asyncflow("asyncflow_graph", job, lambda m: m.NoopExecutionBackend())


# --- dask ------------------------------------------------------------------------------------


def _dask_build(job: Job) -> list[Any]:
    import dask

    task = dask.delayed(step, pure=False)
    return job.build(lambda _stage, *deps: task(*deps))


def compile_dask(job: Job) -> Measurement:
    """W5 for Dask: build the ``dask.delayed`` graph and run its optimize step, no compute."""
    import dask

    elapsed, _ = timed(lambda: dask.optimize(*_dask_build(job)))
    return Measurement(elapsed)


def run_dask_delayed(job: Job, scheduler: str) -> Measurement:
    """``dask.compute`` of the sinks. Every key is requested, so culling is skipped
    (``optimize_graph=False``): Dask culls once per sink, which is quadratic in fan-outs."""
    import dask

    elapsed, results = timed(
        lambda: dask.compute(*_dask_build(job), scheduler=scheduler, optimize_graph=False)
    )
    return Measurement(elapsed, list(results))


def run_dask_distributed(job: Job, processes: bool) -> Measurement:
    """``client.compute`` on the delayed graph (no culling, as in :func:`run_dask_delayed`);
    cluster start-up is reported as setup."""
    from distributed import Client, LocalCluster

    setup_s, cluster = timed(
        lambda: LocalCluster(
            n_workers=2, processes=processes, dashboard_address=None, silence_logs=40
        )
    )
    client = Client(cluster)
    try:
        elapsed, results = timed(
            lambda: client.gather(client.compute(_dask_build(job), optimize_graph=False))
        )
    finally:
        teardown_s, _ = timed(lambda: (client.close(), cluster.close()))
    return Measurement(elapsed, list(results), setup_s, teardown_s)


# dask.delayed graphs of 100k tasks exceed the 120 s bound (superlinear graph handling).
DASK_DELAYED_MAX_TASKS = 50_000


@register(
    "dask-delayed-sync",
    modules=("dask",),
    compile=compile_dask,
    max_tasks=DASK_DELAYED_MAX_TASKS,
)
def dask_sync(job: Job) -> Measurement:
    return run_dask_delayed(job, "sync")


@register("dask-delayed-threads", modules=("dask",), max_tasks=DASK_DELAYED_MAX_TASKS)
def dask_threads(job: Job) -> Measurement:
    return run_dask_delayed(job, "threads")


@register("dask-distributed-threads", modules=("dask", "distributed"))
def dask_distributed_threads(job: Job) -> Measurement:
    return run_dask_distributed(job, processes=False)


@register("dask-distributed-processes", modules=("dask", "distributed"))
def dask_distributed_processes(job: Job) -> Measurement:
    return run_dask_distributed(job, processes=True)

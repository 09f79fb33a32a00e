"""A Dask worker killed (SIGKILL) while it holds finished results, with real
``dask scheduler``/``dask worker`` processes on 127.0.0.1: every future ends, with
its value (Dask computes a lost value again) or a clear error; nothing stays pending.

The chaos campaign (benchmarks/chaos.py) stalled this way: on a busy event loop the
client learnt that a task had finished and, before the backend looked at the
future, that its value was lost with the worker ("lost-data"); the backend saw a
future neither finished nor failed and never reported its task."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask_cluster
import pytest
from dask_cluster import DaskSubprocessCluster, block_until

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.errors import BackendError
from asyncflow_graph.executor.events import RunObserver
from asyncflow_graph.protocol import function_id
from asyncflow_graph.testing import wait_for_path

distributed = pytest.importorskip("distributed")

from asyncflow_graph.backends import dask_refs  # noqa: E402
from asyncflow_graph.backends.dask import DaskExecutionBackend  # noqa: E402

dask_subprocess_cluster = dask_cluster.dask_subprocess_cluster
subprocess_cluster = dask_cluster.subprocess_cluster
pytestmark = pytest.mark.timeout(90)
T = 30


def first_then_hold(directory: str) -> int:
    """First run: announce it (``first``, with this pid) and return once ``go``
    exists. A run after that (Dask computing the lost value again): announce it
    (``again``) and return once ``release`` exists."""
    d = Path(directory)
    if not (d / "first").exists():
        block_until(str(d / "first"), str(d / "go"))
    else:
        block_until(str(d / "again"), str(d / "release"))
    return 42


def _scheduler_state(key: str, dask_scheduler: Any = None) -> str:
    ts = dask_scheduler.tasks.get(key)
    return "forgotten" if ts is None else str(ts.state)


def _workers(dask_scheduler: Any = None) -> list[str]:
    return list(dask_scheduler.workers)


def _kill_worker(cluster: DaskSubprocessCluster, pid: int) -> None:
    """SIGKILL worker process ``pid``; return once the scheduler has removed it (a
    task sent before that could be given to the dead worker, and charged with its
    death)."""
    with cluster.client() as c:
        (address,) = [a for a, p in c.run(os.getpid).items() if p == pid]
        cluster.kill_worker_process(pid)
        _poll(
            f"the scheduler removing {address}", lambda: address not in c.run_on_scheduler(_workers)
        )


def _poll(what: str, ready: Any, timeout: float = T) -> None:
    """Wait (in a thread, polling) until ``ready()`` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def _compute_then_lose(
    cluster: DaskSubprocessCluster, key: str, pid: int, d: Path, errors: list[BaseException]
) -> None:
    """Let the task finish, kill the worker holding its value once the scheduler
    has it in memory, and return once Dask runs it again (the "lost-data" message
    has gone to the client by then)."""
    try:
        with cluster.client() as c:
            (d / "go").touch()
            _poll(f"{key} in memory", lambda: c.run_on_scheduler(_scheduler_state, key) == "memory")
            cluster.kill_worker_process(pid)
            _poll("the rerun", (d / "again").exists)
    except BaseException as exc:  # re-raised by the test
        errors.append(exc)


class Units(RunObserver):
    """The groups of tasks each Dask task ran (coarsening)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_submitted(self, backend: str, units: Any) -> None:
        for u in units:
            self.sizes += list(u.groups or (1,) * len(u.keys))


@pytest.fixture(autouse=True)
def _fresh_estimates() -> Iterator[None]:
    """Durations primed by one test must not decide another's grouping."""
    dask_refs.MODELS.clear()
    yield
    dask_refs.MODELS.clear()


async def _engine(cluster: DaskSubprocessCluster, tmp_path: Path, coarsen: bool) -> Any:
    backend = DaskExecutionBackend(address=cluster.address, coarsen=coarsen)
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    flow.units = Units()
    flow.add_observer(flow.units)
    for f in (first_then_hold, value):  # known to be short: independent ones share a Dask task
        backend._groups.model.durations[function_id(f)] = 1e-4
    return flow, backend


def value(i: int, *_: Any) -> int:
    return i


def plus_one(x: int) -> int:
    return x + 1


@pytest.mark.parametrize("coarsen", [False, True], ids=["single", "group"])
async def test_a_value_lost_with_its_worker_before_the_backend_looked_is_computed_again(
    subprocess_cluster: DaskSubprocessCluster,
    tmp_path: Path,
    coarsen: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow, backend = await _engine(subprocess_cluster, tmp_path, coarsen)
    try:
        handle = flow.function_task(first_then_hold)(str(tmp_path))
        others = [flow.function_task(value)(i) for i in range(2)] if coarsen else []
        await wait_for_path(tmp_path / "first", T)
        (future,) = [
            *backend._futures.values(),
            *(g.future for g in backend._groups.running.values()),
        ]
        assert flow.units.sizes == ([3] if coarsen else [1])
        pid = int((tmp_path / "first").read_text())
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=_compute_then_lose,
            args=(subprocess_cluster, future.key, pid, tmp_path, errors),
        )
        thread.start()
        # The engine's loop is held (as a busy loop is) while the task finishes and
        # its worker dies: the client then reads "key-in-memory" and "lost-data"
        # together, before the backend looks at the future.
        thread.join(T + 5)
        assert not errors, errors
        (tmp_path / "release").touch()
        results = await asyncio.wait_for(asyncio.gather(handle, *others), T)
        assert results == ([42, 0, 1] if coarsen else [42])
        assert handle.state == "DONE"
        # Dask computed the value again; nothing was sent a second time
        assert "resubmitting" not in caplog.text
    finally:
        (tmp_path / "go").touch()
        (tmp_path / "release").touch()
        await asyncio.wait_for(flow.shutdown(), T)


@pytest.mark.parametrize("rerun_dies", [False, True], ids=["rerun", "rerun-killed"])
async def test_a_value_kept_on_the_cluster_and_lost_with_its_worker(
    subprocess_cluster: DaskSubprocessCluster, tmp_path: Path, rerun_dies: bool
) -> None:
    """Reported done, its value kept on the cluster, then its worker killed: a later
    task and the handle get it computed again; if the worker computing it again dies
    too (allowed-failures=0 on this cluster), both fail with a clear error."""
    flow, _ = await _engine(subprocess_cluster, tmp_path, coarsen=False)
    try:
        (tmp_path / "go").touch()
        kept = flow.function_task(first_then_hold)(str(tmp_path))
        inc = flow.function_task(plus_one)
        assert await asyncio.wait_for(inc(kept), T) == 43  # kept's value stays there
        assert kept.state == "DONE"
        pid = int((tmp_path / "first").read_text())
        await asyncio.to_thread(_kill_worker, subprocess_cluster, pid)
        later = inc(kept)  # needs the lost value
        await wait_for_path(tmp_path / "again", T)  # Dask computes it again
        if rerun_dies:
            again = int((tmp_path / "again").read_text())
            await asyncio.to_thread(_kill_worker, subprocess_cluster, again)
            with pytest.raises(BackendError, match=r"task\.000001.*KilledWorker"):
                await asyncio.wait_for(kept, T)
            with pytest.raises(BackendError, match="Dask workers running it died"):
                await asyncio.wait_for(later, T)
            assert kept.state == later.state == "FAILED"
        else:
            (tmp_path / "release").touch()
            assert await asyncio.wait_for(later, T) == 43
            assert await asyncio.wait_for(kept, T) == 42
    finally:
        (tmp_path / "release").touch()
        await asyncio.wait_for(flow.shutdown(), T)

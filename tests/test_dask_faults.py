"""Dask under faults, with real ``dask scheduler``/``dask worker`` processes on
127.0.0.1: the scheduler killed mid-run, an argument that cannot be pickled in a
batch, and a 100 MB argument while the event loop must stay responsive."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import dask_cluster
import pytest
from dask_cluster import DaskSubprocessCluster, block_until

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.errors import BackendError, SerializationError
from asyncflow_graph.testing import wait_for_path

distributed = pytest.importorskip("distributed")

from asyncflow_graph.backends.dask import DaskExecutionBackend  # noqa: E402

dask_subprocess_cluster = dask_cluster.dask_subprocess_cluster
pytestmark = pytest.mark.timeout(120)
T = 60


def _size(data) -> int:
    return len(data)


def _echo(x):
    return x


async def test_a_killed_scheduler_fails_tasks_naming_its_address(tmp_path):
    cluster = DaskSubprocessCluster(tmp_path / "cluster", workers=(("w1", {}), ("w2", {})))
    try:
        await asyncio.to_thread(cluster.start)
        # one Dask task per task (coarsen=False): each loses its own future
        backend = DaskExecutionBackend(
            scheduler_file=str(cluster.scheduler_file), connect_timeout=2, coarsen=False
        )
        flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
        kept = flow.function_task(_echo)("stays on the cluster")
        started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
        blocked = flow.function_task(block_until)
        running = blocked(started, gate, kept)  # runs once kept is done, on the cluster
        retried = flow.function_task(_echo, retries=1)(running)
        started2 = str(tmp_path / "started2")
        patient = flow.function_task(block_until, retries=2)(started2, gate)
        await wait_for_path(Path(started), T)
        await wait_for_path(Path(started2), T)
        assert kept.state == "DONE"  # its value was never fetched here
        assert cluster.scheduler is not None
        os.killpg(cluster.scheduler.pid, signal.SIGKILL)  # the scheduler's node is gone
        with pytest.raises(BackendError, match="lost with the Dask scheduler at") as info:
            await asyncio.wait_for(running, T)
        assert cluster.address in str(info.value) and running.state == "FAILED"
        with pytest.raises(Exception) as dep:  # its dependent ends too, never pending
            await asyncio.wait_for(retried, T)
        assert retried.state == "FAILED", dep.value
        # the value kept on the lost cluster: await and state agree
        with pytest.raises(BackendError, match="lost with the Dask scheduler") as lost:
            await asyncio.wait_for(kept, T)
        assert cluster.address in str(lost.value)
        assert kept.state == "FAILED"
        # retries apply: the task waited for the scheduler to come back, in vain
        with pytest.raises(BackendError, match="did not come back within connect_timeout"):
            await asyncio.wait_for(patient, T)
        assert patient.state == "FAILED"
        await asyncio.wait_for(flow.shutdown(), T)
    finally:
        await asyncio.to_thread(cluster.close)


async def test_an_unpicklable_argument_fails_its_own_task_only(dask_subprocess_cluster, tmp_path):
    backend = DaskExecutionBackend(address=dask_subprocess_cluster.address)
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        echo = flow.function_task(_echo)
        good = [echo(i) for i in range(3)]
        bad = echo(threading.Lock())
        after_bad = echo(bad)
        more = [echo(i) for i in range(3, 6)]
        with pytest.raises(SerializationError) as info:
            await asyncio.wait_for(bad, T)
        assert "'_echo'" in str(info.value) and bad.key in str(info.value)
        assert "argument 1, a lock" in str(info.value)
        assert await asyncio.wait_for(asyncio.gather(*good, *more), T) == list(range(6))
        await asyncio.wait_for(asyncio.wait([after_bad]), T)
        assert after_bad.state == "FAILED"
    finally:
        await asyncio.wait_for(flow.shutdown(), T)


async def test_a_100_mb_argument_does_not_stall_the_loop(dask_subprocess_cluster, tmp_path):
    backend = DaskExecutionBackend(address=dask_subprocess_cluster.address)
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        size = flow.function_task(_size)
        assert await asyncio.wait_for(size(b"warm"), T) == 4
        data = os.urandom(100 * 2**20)
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker():
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.002)
                now = loop.time()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        assert await asyncio.wait_for(size(data), T) == len(data)
        assert await asyncio.wait_for(size(data=data), T) == len(data)  # as a keyword too
        stop.set()
        await ticking
        # Before scattering, the loop stalled 2.4 s per 100 MB; measured now: under 50 ms.
        # The bound is loose on purpose: a loaded CI machine pauses any loop now and then.
        assert max(gaps) < 0.5, f"the loop stalled for {max(gaps) * 1000:.0f} ms"
    finally:
        await asyncio.wait_for(flow.shutdown(), T)

"""Timeouts and cancellation mean what they say: a timeout counts from submission
(builders included) and governs its own task only; a cancelled task never runs its
body later; a cancelled command stops with everything it started."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask_cluster
import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError, TaskTimeoutError
from asyncflow_graph.testing.tasks import wait_for_path

T = 25  # a bound for waiting on events on a loaded machine, never a sleep

dask_local_cluster = dask_cluster.dask_local_cluster


async def ends(*handles):
    return await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), T)


# --------------------------------------------------------------------------- timeouts


async def test_a_timeout_includes_the_async_builder(flow):
    builder_cancelled = asyncio.Event()

    @flow.executable_task(timeout=0.3)
    async def slow_builder():
        try:
            await asyncio.Event().wait()  # never builds its command
        except asyncio.CancelledError:
            builder_cancelled.set()
            raise
        return "echo never"

    t0 = time.monotonic()
    (out,) = await ends(slow_builder())
    assert isinstance(out, TaskTimeoutError)
    assert time.monotonic() - t0 < 3
    await asyncio.wait_for(builder_cancelled.wait(), T)


async def test_a_timeout_counts_the_builder_and_the_command_together(flow):
    @flow.executable_task(timeout=1.0)
    async def build():
        await asyncio.sleep(0.6)
        return "sleep 0.8"  # each alone fits in the timeout, both together do not

    (out,) = await ends(build())
    assert isinstance(out, TaskTimeoutError)


async def test_a_finished_head_with_a_timeout_does_not_time_out_its_chain(flow):
    @flow.function_task(timeout=0.3)
    def quick():
        return 1

    @flow.function_task
    def slower(x):
        time.sleep(0.5)  # longer than quick's timeout: not its business
        return x + 1

    a = quick()
    b = slower(a)
    c = slower(b)
    assert await ends(a, b, c) == [1, 2, 3]
    assert all(h.state == "DONE" for h in (a, b, c))


async def test_a_timeout_in_the_middle_of_a_chain_governs_that_task_alone(flow):
    release = asyncio.Event()

    @flow.function_task
    async def first():
        return 1

    @flow.function_task(timeout=0.3)
    async def hangs(x):
        await release.wait()
        return x

    @flow.function_task
    async def last(x):
        return x

    a = first()
    b = hangs(a)
    c = last(b)
    out = await ends(a, b, c)
    assert out[0] == 1
    assert isinstance(out[1], TaskTimeoutError)
    assert isinstance(out[2], DependencyFailureError)
    plan = flow.compile(c)
    assert [u.keys for u in plan.units if b.key in u.keys] == [(b.key,)]


# --------------------------------------------------------------------------- cancel while waiting


async def test_a_task_cancelled_while_its_dependency_runs_never_runs(flow):
    started, release = asyncio.Event(), asyncio.Event()
    ran = []

    @flow.function_task
    async def upstream():
        started.set()
        await release.wait()
        return 1

    @flow.function_task(backend="default")
    def downstream(x):  # plain: not fused with the async upstream
        ran.append(x)
        return x

    a = upstream()
    b = downstream(a)
    await asyncio.wait_for(started.wait(), T)
    assert b.cancel()
    release.set()
    assert await ends(a) == [1]
    await flow.settle(T)
    await asyncio.sleep(0.1)  # a wrongly dispatched body would have run by now
    assert b.cancelled() and ran == []


@pytest.mark.parametrize("plain", [True, False], ids=["thread-chain", "async-chain"])
async def test_a_cancelled_task_of_a_running_fused_chain_never_runs(flow, plain):
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    ran = []

    if plain:
        import threading

        gate = threading.Event()

        @flow.function_task
        def upstream():
            loop.call_soon_threadsafe(started.set)
            gate.wait(T)
            return 1

        @flow.function_task
        def downstream(x):
            ran.append(x)
            return x

    else:

        @flow.function_task
        async def upstream():
            started.set()
            await release.wait()
            return 1

        @flow.function_task
        async def downstream(x):
            ran.append(x)
            return x

    a = upstream()
    b = downstream(a)
    c = downstream(b)
    assert len(flow.compile(c).units) == 1  # one fused submission
    await asyncio.wait_for(started.wait(), T)
    assert b.cancel()
    if plain:
        gate.set()
    release.set()
    assert await ends(a) == [1]
    await flow.settle(T)
    assert b.cancelled() and c.cancelled()
    await asyncio.sleep(0.2)
    assert ran == []


def _wait_for_file(path: str) -> int:
    Path(path + ".started").write_text("")
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 1


def _write_marker(x: int, path: str) -> int:
    Path(path).write_text("ran")
    return x


async def test_a_cancelled_task_of_a_fused_chain_in_a_process_never_runs(tmp_path):
    pool = ProcessPoolExecutor(max_workers=1)
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(pool), work_dir=tmp_path)
    try:
        go, marker = tmp_path / "go", tmp_path / "marker"
        upstream = flow.function_task(_wait_for_file)
        downstream = flow.function_task(_write_marker)
        a = upstream(str(go))
        b = downstream(a, str(marker))
        assert len(flow.compile(b).units) == 1
        await wait_for_path(Path(str(go) + ".started"), T)  # the chain runs in the worker
        assert b.cancel()
        go.write_text("go")
        assert await ends(a) == [1]
        await asyncio.sleep(0.3)
        assert not marker.exists()
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- process groups


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def _cancel_kills_the_group(flow, tmp_path, **options):
    pidfile = tmp_path / "child.pid"

    @flow.executable_task(**options)
    async def spawner():
        return f"sleep 60 & echo $! > {pidfile}; wait"

    h = spawner()
    await wait_for_path(pidfile, T)
    while not pidfile.read_text().strip():
        await asyncio.sleep(0.01)
    child = int(pidfile.read_text())
    assert _alive(child)
    h.cancel()
    await flow.settle(T)
    deadline = time.monotonic() + T
    while _alive(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(child), "the command's child kept running after the cancel"


async def test_cancelling_a_command_stops_its_whole_process_group(flow, tmp_path):
    await _cancel_kills_the_group(flow, tmp_path)


async def test_a_command_timeout_stops_its_whole_process_group(flow, tmp_path):
    pidfile = tmp_path / "child.pid"

    @flow.executable_task(timeout=0.5)
    async def spawner():
        return f"sleep 60 & echo $! > {pidfile}; wait"

    (out,) = await ends(spawner())
    assert isinstance(out, TaskTimeoutError)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + T
    while _alive(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(child)


@pytest.mark.timeout(120)
async def test_cancelling_a_command_on_dask_stops_its_whole_process_group(
    dask_local_cluster, tmp_path
):
    from asyncflow_graph.backends import DaskExecutionBackend

    flow = await WorkflowEngine.create(
        backend=DaskExecutionBackend(cluster=dask_local_cluster), work_dir=tmp_path
    )
    try:
        await _cancel_kills_the_group(flow, tmp_path)
    finally:
        await asyncio.wait_for(flow.shutdown(), 30)

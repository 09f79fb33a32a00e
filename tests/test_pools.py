"""Local thread and process pools under faults, with real worker processes: workers
killed by SIGKILL, SIGSEGV and SIGTERM while other engines run, the rebuilt pool's
settings, arguments that cannot be pickled, and shutdown with work that will not
stop."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import BackendError, SerializationError, TaskTimeoutError

T = 30  # generous bound for waiting on events (never a synchronization sleep)


def _wait_for(path: str, limit: float = T) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def _suicide(sig: int, other_started: str) -> None:
    """Wait until the other worker runs its task, then die of ``sig``."""
    _wait_for(other_started)
    os.kill(os.getpid(), sig)
    time.sleep(T)


def _victim(started: str, gate: str) -> int:
    """Runs in the other worker: the pool SIGTERMs it when the first one dies."""
    Path(started).touch()
    _wait_for(gate)
    return os.getpid()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM])
async def test_a_dying_worker_fails_only_its_pool_tasks(sig, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="asyncflow_graph")
    other = await WorkflowEngine.create(backend=LocalExecutionBackend(name="t"), work_dir=tmp_path)
    flow = await WorkflowEngine.create(
        backend=LocalExecutionBackend(ProcessPoolExecutor(2), name="p"), work_dir=tmp_path
    )
    try:
        started, release = asyncio.Event(), asyncio.Event()

        @other.function_task
        async def elsewhere():
            started.set()
            await release.wait()
            return "survived"

        steady = elsewhere()
        await asyncio.wait_for(started.wait(), T)
        marker, gate = str(tmp_path / "victim-started"), str(tmp_path / "gate")
        victim = flow.function_task(_victim, retries=1)(marker, gate)
        dying = flow.function_task(_suicide)(int(sig), marker)
        with pytest.raises(BackendError, match="worker process of backend 'p' died") as info:
            await asyncio.wait_for(dying, T)
        assert "_suicide" in str(info.value) and dying.state == "FAILED"
        Path(gate).touch()
        # the victim's first run was SIGTERMed by the pool; its retry runs in the new pool
        assert await asyncio.wait_for(victim, T) != os.getpid()
        release.set()
        assert await asyncio.wait_for(steady, T) == "survived"  # the other engine never heard
        assert "received SIG" not in caplog.text
        assert await asyncio.wait_for(flow.function_task(os.getpid)(), T) != os.getpid()
    finally:
        await asyncio.wait_for(asyncio.gather(flow.shutdown(), other.shutdown()), T)


# --------------------------------------------------------------------------- rebuilt pool

_WORKER: dict[str, str] = {}  # what the initializer left in this worker process


def _remember(tag: str) -> None:
    _WORKER["tag"] = tag


def _whoami() -> tuple[str | None, int]:
    return _WORKER.get("tag"), os.getpid()


def _die() -> None:
    os._exit(3)


async def test_the_rebuilt_pool_keeps_the_users_settings(tmp_path):
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(
        1, mp_context=context, initializer=_remember, initargs=("mine",), max_tasks_per_child=1
    )
    backend = LocalExecutionBackend(pool, name="p")
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        whoami = flow.function_task(_whoami)
        assert (await asyncio.wait_for(whoami(), T))[0] == "mine"
        with pytest.raises(BackendError, match="died"):
            await asyncio.wait_for(flow.function_task(_die)(), T)
        assert backend.executor is not pool  # rebuilt ...
        first = await asyncio.wait_for(whoami(), T)
        second = await asyncio.wait_for(whoami(), T)
        assert first[0] == second[0] == "mine"  # ... with the initializer and its args
        assert first[1] != second[1]  # ... max_tasks_per_child=1: a fresh worker per task
        assert backend.executor._mp_context is context  # ... and the same start method
    finally:
        await asyncio.wait_for(flow.shutdown(), T)


# --------------------------------------------------------------------------- serialization


def _double(x):
    return 2 * x


async def test_an_unpicklable_argument_fails_its_own_task_naming_it(tmp_path):
    flow = await WorkflowEngine.create(
        backend=LocalExecutionBackend(ProcessPoolExecutor(1), name="p"), work_dir=tmp_path
    )
    try:
        double = flow.function_task(_double)
        good = [double(i) for i in range(3)]
        bad = double(threading.Lock())
        more = [double(i) for i in range(3, 6)]
        with pytest.raises(SerializationError) as info:
            await asyncio.wait_for(bad, T)
        message = str(info.value)
        assert "'_double'" in message and bad.key in message
        assert "argument 1, a lock" in message
        assert await asyncio.wait_for(asyncio.gather(*good, *more), T) == [0, 2, 4, 6, 8, 10]
    finally:
        await asyncio.wait_for(flow.shutdown(), T)


def _unpicklable_result():
    return threading.Lock()


async def test_an_unpicklable_result_names_the_task(tmp_path):
    flow = await WorkflowEngine.create(
        backend=LocalExecutionBackend(ProcessPoolExecutor(1), name="p"), work_dir=tmp_path
    )
    try:
        h = flow.function_task(_unpicklable_result)()
        with pytest.raises(SerializationError, match="cannot be pickled back") as info:
            await asyncio.wait_for(h, T)
        assert h.key in str(info.value)
        assert await asyncio.wait_for(flow.function_task(_double)(4), T) == 8  # pool intact
    finally:
        await asyncio.wait_for(flow.shutdown(), T)


# --------------------------------------------------------------------------- shutdown


async def test_shutdown_after_a_thread_task_timed_out_returns_at_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="asyncflow_graph")
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    gate = threading.Event()
    try:

        @flow.function_task(timeout=0.05)
        def stubborn():
            gate.wait(T)  # a thread: the timeout cannot stop it

        h = stubborn()
        with pytest.raises(TaskTimeoutError):
            await asyncio.wait_for(h, T)
        t0 = time.monotonic()
        await asyncio.wait_for(flow.shutdown(), 10)
        assert time.monotonic() - t0 < 2.5
        assert "abandoned" in caplog.text and "cannot be killed" in caplog.text
        assert f"'stubborn' [{h.key}]" in caplog.text
    finally:
        gate.set()


def _forever(started: str) -> None:
    Path(started).touch()
    time.sleep(120)


async def test_shutdown_kills_a_worker_process_that_will_not_stop(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="asyncflow_graph")
    backend = LocalExecutionBackend(ProcessPoolExecutor(1), name="p")
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    marker = str(tmp_path / "started")
    h = flow.function_task(_forever)(marker)
    await asyncio.to_thread(_wait_for, marker)
    workers = list(backend.executor._processes.values())
    t0 = time.monotonic()
    await asyncio.wait_for(flow.shutdown(), 10)
    assert time.monotonic() - t0 < 3
    assert h.state == "CANCELLED"
    assert all(not p.is_alive() for p in workers)
    assert "killing the worker processes" in caplog.text and "'_forever'" in caplog.text

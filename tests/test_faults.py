"""Fault injection: failing tasks, broken and silent backends, dying workers and
shutdown hygiene. Every case checks that exactly the right futures fail, the rest
finish, and the engine still runs a task afterwards."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import pytest
from asyncflow_style_backend import AsyncFlowStyleBackend

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends.base import Backend, Work
from asyncflow_graph.errors import BackendError, DependencyFailureError, TaskTimeoutError
from asyncflow_graph.testing import wait_for_path

T = 10  # generous bound for waiting on events (never a synchronization sleep)


def ultimate_cause(exc: BaseException) -> BaseException:
    """Follow DependencyFailureError.root_cause down to the original exception."""
    while isinstance(exc, DependencyFailureError):
        assert exc.root_cause is not None
        exc = exc.root_cause
    return exc


async def still_usable(engine: WorkflowEngine, backend: str | None = None) -> None:
    opts = {} if backend is None else {"backend": backend}

    @engine.function_task(**opts)
    async def probe(x):
        return x * 2

    assert await asyncio.wait_for(probe(21), T) == 42


# --------------------------------------------------------------------------- 1. wide DAG


async def test_failure_in_wide_dag_fails_only_descendants(flow):
    n, bad = 50, 17
    ran: list[str] = []

    @flow.function_task
    async def root(i):
        ran.append(f"root{i}")
        return i

    @flow.function_task
    async def mid(i, r):
        ran.append(f"mid{i}")
        if i == bad:
            raise ValueError(f"mid {i} exploded")
        return r + 100

    @flow.function_task
    async def sink(i, m):
        ran.append(f"sink{i}")
        return m + 1000

    @flow.function_task
    async def reduce(*xs):
        ran.append("reduce")
        return sum(xs)

    roots = [root(i) for i in range(n)]
    mids = [mid(i, r) for i, r in enumerate(roots)]
    sinks = [sink(i, m) for i, m in enumerate(mids)]
    total = reduce(*sinks)
    everything = [*roots, *mids, *sinks, total]
    await asyncio.wait_for(asyncio.wait(everything), T)

    with pytest.raises(ValueError, match="mid 17 exploded") as info:
        await mids[bad]
    original = info.value
    failed = {mids[bad].key, sinks[bad].key, total.key}
    for h in (sinks[bad], total):
        with pytest.raises(DependencyFailureError) as dinfo:
            await h
        assert ultimate_cause(dinfo.value) is original
        assert h.state == "FAILED"
    assert sinks[bad].exception().root_cause is original
    for h in everything:
        if h.key in failed:
            assert h.state == "FAILED"
        else:
            assert h.state == "DONE", h.key
            assert not h.cancelled() and h.exception() is None
    assert [await roots[i] for i in range(n)] == list(range(n))
    assert await sinks[0] == 1100
    assert f"sink{bad}" not in ran and "reduce" not in ran
    assert sum(1 for r in ran if r.startswith("sink")) == n - 1
    await still_usable(flow)


# --------------------------------------------------------------------------- 2. submit raises


class ExplodingBackend(Backend):
    def __init__(self, name: str = "bad") -> None:
        super().__init__(name)
        self.calls = 0

    def submit(self, works: Sequence[Work]) -> None:
        self.calls += 1
        raise RuntimeError("scheduler unreachable")


async def test_backend_submit_raises(tmp_path):
    bad = ExplodingBackend("bad")
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="good"), bad], work_dir=tmp_path
    )
    try:
        ran: list[str] = []

        @engine.function_task(backend="bad")
        async def on_bad(i):
            ran.append(f"bad{i}")
            return i

        @engine.function_task(backend="good")
        async def on_good(i, *deps):
            ran.append(f"good{i}")
            return i

        bads = [on_bad(i) for i in range(3)]
        goods = [on_good(i) for i in range(3)]
        dependent = on_good(99, bads[0])
        await asyncio.wait_for(asyncio.wait([*bads, *goods, dependent]), T)

        for h in bads:
            with pytest.raises(BackendError, match="'bad'") as info:
                await h
            assert "scheduler unreachable" in str(info.value)
            assert h.state == "FAILED"
        assert await asyncio.gather(*goods) == [0, 1, 2]
        with pytest.raises(DependencyFailureError) as dinfo:
            await dependent
        assert isinstance(dinfo.value.root_cause, BackendError)
        assert bad.calls >= 1
        assert not any(r.startswith("bad") for r in ran) and "good99" not in ran
        await still_usable(engine, "good")
    finally:
        await asyncio.wait_for(engine.shutdown(), T)


# --------------------------------------------------------------------------- 3. silent backend


class SilentBackend(Backend):
    """Accepts work and never reports anything."""

    def __init__(self, name: str = "silent") -> None:
        super().__init__(name)
        self.held: list[Work] = []
        self.cancelled: list[str] = []
        self.cancel_called = asyncio.Event()
        self.closed = False

    def submit(self, works: Sequence[Work]) -> None:
        self.held.extend(works)

    async def cancel(self, work: Work) -> None:
        self.cancelled.append(work.key)
        self.cancel_called.set()

    async def close(self) -> None:
        self.closed = True


async def test_backend_that_never_answers_times_out(tmp_path):
    silent = SilentBackend()
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(), silent], work_dir=tmp_path
    )
    ran: list[str] = []

    @engine.function_task(backend="silent", timeout=0.2)
    async def lost():
        ran.append("lost")

    @engine.function_task
    async def after(x):
        ran.append("after")

    h = lost()
    d = after(h)
    with pytest.raises(TaskTimeoutError) as info:
        await asyncio.wait_for(h, T)
    assert isinstance(info.value, TimeoutError)
    assert h.state == "FAILED"
    with pytest.raises(DependencyFailureError) as dinfo:
        await d
    assert dinfo.value.root_cause is info.value
    await asyncio.wait_for(silent.cancel_called.wait(), T)
    assert silent.cancelled == [h.key]
    assert [w.key for w in silent.held] == [h.key]
    assert ran == []
    await still_usable(engine)
    await asyncio.wait_for(engine.shutdown(), T)
    assert silent.closed


# --------------------------------------------------------------------------- 4. worker dies


def _die() -> None:
    os._exit(1)


async def test_process_worker_dies_pool_is_rebuilt(tmp_path):
    engine = await WorkflowEngine.create(
        backend=[
            LocalExecutionBackend(),
            LocalExecutionBackend(ProcessPoolExecutor(1), name="procs"),
        ],
        work_dir=tmp_path,
    )
    try:
        die = engine.function_task(_die, backend="procs")
        pid = engine.function_task(os.getpid, backend="procs")
        h = die()
        with pytest.raises(BackendError, match="died") as info:
            await asyncio.wait_for(h, T * 3)
        assert "procs" in str(info.value)
        assert h.state == "FAILED"
        other = await asyncio.wait_for(pid(), T * 3)
        assert other != os.getpid()
        await still_usable(engine)
    finally:
        await asyncio.wait_for(engine.shutdown(), T * 3)


# --------------------------------------------------------------------------- 5. AsyncFlow-style


class FlakySubmitBackend(AsyncFlowStyleBackend):
    def __init__(self) -> None:
        super().__init__(name="flaky")
        self.fail_submits = True

    async def submit_tasks(self, tasks):
        if self.fail_submits:
            raise RuntimeError("queue full")
        await super().submit_tasks(tasks)


async def test_asyncflow_style_submit_tasks_raises(tmp_path):
    backend = FlakySubmitBackend()
    engine = await WorkflowEngine.create(
        backend=[backend, LocalExecutionBackend()], work_dir=tmp_path
    )
    try:

        @engine.function_task
        async def work(i):
            return i

        @engine.function_task(backend="default")
        async def local(x):
            return x

        hs = [work(i) for i in range(3)]
        d = local(hs[0])
        await asyncio.wait_for(asyncio.wait([*hs, d]), T)
        for h in hs:
            with pytest.raises(BackendError, match="'flaky'") as info:
                await h
            assert "queue full" in str(info.value)
        with pytest.raises(DependencyFailureError):
            await d
        backend.fail_submits = False
        await still_usable(engine)  # on the same (now healthy) AsyncFlow-style backend
        await still_usable(engine, "default")
    finally:
        await asyncio.wait_for(engine.shutdown(), T)
    assert backend.shutdown_calls == 1


# --------------------------------------------------------------------------- 6. hygiene


def _asyncflow_threads(ignore: frozenset[threading.Thread] = frozenset()) -> list[str]:
    """Live asyncflow- threads, except ``ignore`` (left by other test modules)."""
    return [
        t.name for t in threading.enumerate() if t.name.startswith("asyncflow-") and t not in ignore
    ]


def _square(x):
    return x * x


async def test_shutdown_leaves_no_threads_processes_or_fds(tmp_path):
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = frozenset(threading.enumerate())
    children_before = set(multiprocessing.active_children())
    engine = await WorkflowEngine.create(
        backend=[
            LocalExecutionBackend(name="threads"),
            LocalExecutionBackend(ProcessPoolExecutor(2), name="procs"),
        ],
        work_dir=tmp_path,
    )

    @engine.function_task
    def sync_work(x):
        return threading.current_thread().name

    square = engine.function_task(_square, backend="procs")

    @engine.executable_task(capture_stdio=True)
    def echo(i):
        return f"echo line {i}"

    names = await asyncio.gather(*(sync_work(i) for i in range(8)))
    assert all(n.startswith("asyncflow-") for n in names)
    assert await asyncio.gather(*(square(i) for i in range(6))) == [i * i for i in range(6)]
    assert multiprocessing.active_children()
    paths = await asyncio.wait_for(asyncio.gather(*(echo(i) for i in range(20))), T * 3)
    assert len(set(paths)) == 20
    assert _asyncflow_threads()
    await asyncio.wait_for(engine.shutdown(), T * 3)

    assert _asyncflow_threads(threads_before) == []
    assert set(multiprocessing.active_children()) <= children_before
    fds_after = len(os.listdir("/proc/self/fd"))
    print(f"open fds: before={fds_before} after={fds_after}")
    assert fds_after <= fds_before


# --------------------------------------------------------------------------- 7/8. shutdown


async def test_shutdown_never_blocks_the_loop(tmp_path):
    threads_before = frozenset(threading.enumerate())
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    gate = threading.Event()

    @engine.function_task
    def blocker():
        loop.call_soon_threadsafe(started.set)
        gate.wait(T * 3)
        return "late"

    try:
        h = blocker()
        await asyncio.wait_for(started.wait(), T)
        shutting = asyncio.create_task(engine.shutdown())

        async def spinner():
            for _ in range(20):
                await asyncio.sleep(0)
            return "spun"

        assert await asyncio.wait_for(spinner(), T) == "spun"
        assert not shutting.done()  # still waiting on the thread...
        assert not gate.is_set()  # ...which is still blocked
    finally:
        gate.set()
    await asyncio.wait_for(shutting, T)
    assert h.cancelled() and h.state == "CANCELLED"
    assert _asyncflow_threads(threads_before) == []


async def test_shutdown_wait_lets_running_work_finish(tmp_path):
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    started, gate = asyncio.Event(), asyncio.Event()

    @engine.function_task
    async def slow():
        started.set()
        await gate.wait()
        return "finished"

    h = slow()
    await asyncio.wait_for(started.wait(), T)
    shutting = asyncio.create_task(engine.shutdown(wait=True))

    async def release():
        for _ in range(10):
            await asyncio.sleep(0)
        assert not shutting.done() and not h.done()
        gate.set()

    await asyncio.wait_for(asyncio.gather(release(), shutting), T)
    assert h.state == "DONE" and h.result() == "finished"


# --------------------------------------------------------------------------- 9. retried work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancel_kills_a_retried_command(flow, tmp_path):
    """The retry of a failed command is tracked like the first attempt: cancel kills it
    (the first attempt's cleanup must not forget the retry's process)."""
    pid_file, tried = tmp_path / "pid", tmp_path / "tried"

    @flow.executable_task(retries=1)
    def attempt():
        return (
            f"if [ -e {tried} ]; then echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; "
            f"exec sleep 60; else touch {tried}; exit 1; fi"
        )

    h = attempt()
    await wait_for_path(pid_file, T)
    pid = int(pid_file.read_text())
    try:
        assert h.cancel() is True
        await flow.settle(timeout=T)
        deadline = asyncio.get_running_loop().time() + T
        while _alive(pid):
            assert asyncio.get_running_loop().time() < deadline, "the retried command still runs"
            await asyncio.sleep(0.01)
    finally:
        if _alive(pid):
            os.kill(pid, 9)


async def test_cancel_stops_a_retried_async_task(flow):
    """The same for a coroutine function run on the loop: its retry's Task is cancelled."""
    attempts, started, cancelled = [], asyncio.Event(), asyncio.Event()

    @flow.function_task(retries=1)
    async def attempt():
        attempts.append(1)
        await asyncio.sleep(0)  # suspends: the attempt continues in a Task
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    h = attempt()
    await asyncio.wait_for(started.wait(), T)
    assert h.cancel() is True
    await asyncio.wait_for(cancelled.wait(), T)

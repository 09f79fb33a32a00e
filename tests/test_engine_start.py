"""Engine start-up failures: a backend whose start() raises makes create() raise its
error, and every backend that did start is closed exactly once, with nothing left
running and the engine registered nowhere."""

from __future__ import annotations

import asyncio

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine, signals
from asyncflow_graph.backends.base import BackendContext
from asyncflow_graph.backends.noop import NoopExecutionBackend
from asyncflow_graph.errors import BackendError, EngineClosedError

T = 5  # generous bound for waiting on events (never a synchronization sleep)


class ProbeBackend(NoopExecutionBackend):
    """Counts start/close calls; optionally waits for ``gate`` inside start()."""

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        super().__init__(name)
        self.gate = gate
        self.entered = asyncio.Event()
        self.started = asyncio.Event()
        self.closes = 0

    async def start(self, context: BackendContext) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        await super().start(context)
        self.started.set()

    async def close(self) -> None:
        self.closes += 1


class FailingBackend(NoopExecutionBackend):
    """start() waits for ``after`` (if given), then raises ``error``."""

    def __init__(self, name: str, error: BaseException, after: asyncio.Event | None = None):
        super().__init__(name)
        self.error = error
        self.after = after
        self.raised = asyncio.Event()
        self.closes = 0

    async def start(self, context: BackendContext) -> None:
        if self.after is not None:
            await self.after.wait()
        self.raised.set()
        raise self.error

    async def close(self) -> None:
        self.closes += 1


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_started_backend_is_closed_once_when_a_later_one_fails(tmp_path):
    good = ProbeBackend("good")
    bad = FailingBackend("bad", BackendError("scheduler unreachable"), after=good.started)
    with pytest.raises(BackendError, match="scheduler unreachable"):
        await asyncio.wait_for(WorkflowEngine.create(backend=[good, bad], work_dir=tmp_path), T)
    assert good.started.is_set()
    assert good.closes == 1
    assert bad.closes == 0  # its start failed: releasing its resources is its own job
    assert not other_tasks()


async def test_backend_still_starting_when_another_fails_is_closed(tmp_path):
    bad = FailingBackend("bad", BackendError("no quota"))
    slow = ProbeBackend("slow", gate=bad.raised)  # finishes only after bad has raised
    with pytest.raises(BackendError, match="no quota"):
        await asyncio.wait_for(WorkflowEngine.create(backend=[slow, bad], work_dir=tmp_path), T)
    assert slow.started.is_set()
    assert slow.closes == 1
    assert not other_tasks()


async def test_error_keeps_its_type_and_message_and_names_the_backend(tmp_path):
    error = ConnectionRefusedError("connection refused")
    good = ProbeBackend("good")
    bad = FailingBackend("gpu-cluster", error, after=good.started)
    with pytest.raises(ConnectionRefusedError) as info:
        await asyncio.wait_for(WorkflowEngine.create(backend=[good, bad], work_dir=tmp_path), T)
    assert info.value is error
    assert str(info.value) == "connection refused"
    notes = "\n".join(getattr(info.value, "__notes__", ()))
    assert "'gpu-cluster'" in notes and "FailingBackend" in notes


async def test_real_local_backend_is_shut_down(tmp_path):
    local = LocalExecutionBackend(name="local")
    bad = FailingBackend("bad", BackendError("boom"))
    with pytest.raises(BackendError, match="boom"):
        await asyncio.wait_for(WorkflowEngine.create(backend=[local, bad], work_dir=tmp_path), T)
    assert local.state() == "SHUTDOWN"  # its thread pool is shut down too
    assert not other_tasks()


async def test_failed_engine_is_registered_nowhere_and_stays_closed(tmp_path):
    good = ProbeBackend("good")
    bad = FailingBackend("bad", BackendError("boom"), after=good.started)
    flow = WorkflowEngine(backend=[good, bad], work_dir=tmp_path)

    @flow.function_task
    async def early():
        return 1

    handle = early()  # made before the start failed: must end, not hang
    with pytest.raises(BackendError, match="boom"):
        async with flow:
            pytest.fail("the body must not run")
    engines = signals.watched(asyncio.get_running_loop())
    assert flow not in engines
    with pytest.raises(asyncio.CancelledError, match="failed to start"):
        await asyncio.wait_for(handle, T)
    assert handle.state == "CANCELLED"
    with pytest.raises(EngineClosedError):
        early()
    await asyncio.wait_for(flow.shutdown(), T)  # safe, and closes nothing twice
    assert good.closes == 1
    assert not other_tasks()


async def test_cancelled_create_closes_started_backends(tmp_path):
    good = ProbeBackend("good")
    hung = ProbeBackend("hung", gate=asyncio.Event())  # never finishes starting
    creating = asyncio.ensure_future(WorkflowEngine.create(backend=[good, hung], work_dir=tmp_path))
    await asyncio.wait_for(asyncio.gather(good.started.wait(), hung.entered.wait()), T)
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    assert good.closes == 1
    assert hung.closes == 0
    assert not other_tasks()


async def test_create_after_a_failed_create_works(tmp_path):
    first = ProbeBackend("a")
    bad = FailingBackend("bad", BackendError("boom"), after=first.started)
    with pytest.raises(BackendError):
        await asyncio.wait_for(WorkflowEngine.create(backend=[first, bad], work_dir=tmp_path), T)

    a, b = LocalExecutionBackend(name="a"), ProbeBackend("b")
    flow = await asyncio.wait_for(WorkflowEngine.create(backend=[a, b], work_dir=tmp_path), T)
    try:
        assert list(flow.backends) == ["a", "b"]

        @flow.function_task(backend="a")
        async def double(x):
            return 2 * x

        @flow.function_task(backend="b")
        async def dry(x):
            return x

        assert await asyncio.wait_for(asyncio.gather(double(21), dry(1)), T) == [
            42,
            "Dummy Output",
        ]
    finally:
        await asyncio.wait_for(flow.shutdown(), T)
    assert a.state() == "SHUTDOWN"
    assert b.closes == 1
    assert first.closes == 1

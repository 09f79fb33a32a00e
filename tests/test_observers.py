"""Run observers: which hooks the executor calls, and the RunView they may read."""

from __future__ import annotations

import asyncio

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.executor.events import RunObserver, RunView

T = 5


class EndsOnly(RunObserver):
    """Overrides one hook: the executor must call that one and no other."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, float | None]] = []
        self.run: RunView | None = None

    def on_attach(self, run: RunView) -> None:
        self.run = run

    def on_done(self, key: str, value: object) -> None:
        assert self.run is not None
        self.ended.append((key, self.run.durations.get(key)))


async def test_only_overridden_hooks_are_called(flow):
    obs = EndsOnly()
    flow.add_observer(obs)
    hooks = flow._executor.observers.hooks
    assert hooks["on_done"] == (obs.on_done,)
    assert all(not fns for name, fns in hooks.items() if name != "on_done")

    @flow.function_task
    async def one():
        await asyncio.sleep(0)  # suspends: runs as a Task, reported running then done
        return 1

    h = one()
    assert await h == 1
    # the duration is recorded before the ending hook runs
    assert obs.ended == [(h.key, pytest.approx(obs.ended[0][1]))]
    assert obs.ended[0][1] is not None and obs.ended[0][1] >= 0
    flow.remove_observer(obs)
    assert not flow._executor.observers.hooks["on_done"]


async def test_live_counts_queued_and_running(tmp_path):
    gate = asyncio.Event()
    started = asyncio.Event()
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    try:
        run = flow.run_view

        @flow.function_task
        async def wait():
            started.set()
            await gate.wait()

        handles = [wait() for _ in range(3)]
        await asyncio.wait_for(started.wait(), T)
        # async tasks run on the loop: all three started, none queued
        assert run.live_counts() == {"default": (0, 3)}
        gate.set()
        await asyncio.gather(*handles)
        assert run.live_counts() == {}
    finally:
        await flow.shutdown()


async def test_cancelled_running_task_leaves_the_live_counts(flow):
    started = asyncio.Event()

    @flow.function_task
    async def forever():
        started.set()
        await asyncio.Event().wait()

    h = forever()
    await asyncio.wait_for(started.wait(), T)
    assert flow.run_view.live_counts() == {"default": (0, 1)}
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h
    assert flow.run_view.live_counts() == {}
    assert h.key in flow.run_view.durations  # how long it ran before the cancel


async def test_started_events_attached_only_while_subscribed(flow):
    tel = await flow.start_telemetry()
    # telemetry alone needs no per-key start
    assert not flow._executor.observers.hooks["on_running"]
    events: list[object] = []
    tel.subscribe(events.append)
    assert len(flow._executor.observers.hooks["on_running"]) == 1

    @flow.function_task
    async def one():
        return 1

    await one()
    await asyncio.sleep(0)  # delivery happens at the end of a loop turn
    assert "TaskStarted" in [e.event_type for e in events]
    tel.unsubscribe(events.append)
    assert not flow._executor.observers.hooks["on_running"]
    await tel.stop()

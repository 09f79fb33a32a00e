"""Large turns are compiled in slices of COMPILE_CHUNK nodes, one slice per loop turn.

Small slices here (8 nodes) so that every border case is reached with a few tasks:
dependencies across slices, chains split at a border, cancel and shutdown while
nodes still wait in the backlog, and tasks created while a backlog remains.
"""

from __future__ import annotations

import asyncio

import pytest

import asyncflow_graph.executor.intake as intake_module
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.compiler import Plan
from asyncflow_graph.executor.events import RunObserver

CHUNK = 8


class Plans(RunObserver):
    def __init__(self) -> None:
        self.plans: list[Plan] = []

    def on_plan(self, plan: Plan) -> None:
        self.plans.append(plan)


@pytest.fixture
async def flow(monkeypatch, tmp_path):
    monkeypatch.setattr(intake_module, "COMPILE_CHUNK", CHUNK)
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    plans = Plans()
    engine.add_observer(plans)
    engine.plans = plans.plans  # type: ignore[attr-defined]
    yield engine
    await engine.shutdown()


async def inc(*xs: int) -> int:
    return 1 + sum(xs)


async def test_a_large_turn_is_compiled_in_creation_order_slices(flow):
    task = flow.function_task(inc)
    handles = [task() for _ in range(50)]
    assert await asyncio.gather(*handles) == [1] * 50
    sizes = [len(p.nodes) for p in flow.plans]
    assert sizes == [8, 8, 8, 8, 8, 8, 2]
    compiled = [k for p in flow.plans for k in p.nodes]
    assert compiled == [h.key for h in handles]


async def test_dependencies_across_slices(flow):
    task = flow.function_task(inc)
    leaves = [task() for _ in range(20)]
    total = task(*leaves)
    assert await total == 21
    assert len(flow.plans) == 3  # the fan-in's inputs were compiled two slices earlier


async def test_a_chain_crossing_slice_borders_is_fused_per_slice(flow):
    task = flow.function_task(inc)
    h = task()
    for _ in range(29):
        h = task(h)
    assert await h == 30
    units = [u for p in flow.plans for u in p.units]
    assert [len(u.keys) for u in units] == [8, 8, 8, 6]


async def test_cancel_of_a_task_still_in_the_backlog(flow):
    task = flow.function_task(inc)
    handles = [task() for _ in range(40)]
    child = task(handles[35])
    await asyncio.sleep(0)  # one loop turn: the first slice only
    state = flow._executor.state
    assert state.knows(handles[0].key) and not state.knows(handles[35].key)
    assert handles[35].cancel() is True
    assert handles[35].cancelled() and handles[35].state == "CANCELLED"
    with pytest.raises(asyncio.CancelledError):
        await child
    rest = [h for i, h in enumerate(handles) if i != 35]
    assert await asyncio.gather(*rest) == [1] * 39


async def test_tasks_created_while_a_backlog_remains_run_after_it(flow):
    task = flow.function_task(inc)
    first = [task() for _ in range(20)]
    await asyncio.sleep(0)
    assert flow._intake._backlog  # slices still waiting
    later = task(first[-1], first[0])
    assert await later == 3
    compiled = [k for p in flow.plans for k in p.nodes]
    assert compiled.index(later.key) > compiled.index(first[-1].key)


async def test_shutdown_with_a_backlog_ends_every_handle(monkeypatch, tmp_path):
    monkeypatch.setattr(intake_module, "COMPILE_CHUNK", CHUNK)
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    task = flow.function_task(wait_forever)
    handles = [task() for _ in range(30)]
    await started.wait()
    assert flow._intake._backlog
    await flow.shutdown()
    assert all(h.done() for h in handles)
    assert all(h.cancelled() for h in handles)
    assert not flow._intake._backlog and flow._executor.state.open_count == 0


async def test_default_slice_size_runs_a_large_fan_out(tmp_path):
    n = intake_module.COMPILE_CHUNK * 2 + 5
    async with await WorkflowEngine.create(
        backend=LocalExecutionBackend(), work_dir=tmp_path
    ) as flow:
        task = flow.function_task(inc)
        handles = [task() for _ in range(n)]
        joined = task(handles[0], handles[-1])
        assert sum(await asyncio.gather(*handles)) == n
        assert await joined == 3


async def test_a_block_cancelled_while_its_members_wait_in_the_backlog(flow):
    ran: list[int] = []
    gate = asyncio.Event()
    members: list[asyncio.Future[int]] = []  # the run holds handles weakly: the test holds them

    @flow.function_task
    async def member(i: int) -> int:
        ran.append(i)
        return i

    @flow.block
    async def body():
        handles = [member(i) for i in range(40)]
        members.extend(handles)
        gate.set()
        return await asyncio.gather(*handles)

    blk = body()
    await gate.wait()  # the body created its 40 members; one slice at most is compiled
    assert flow._intake._backlog
    blk.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blk
    await flow.shutdown()
    assert len(members) == 40 and all(f.done() for f in members)
    assert len(ran) <= CHUNK, "members compiled after their block ended never ran"
    assert sum(f.cancelled() for f in members) >= 40 - CHUNK


async def test_cancel_of_a_backlog_key_from_an_observer_during_a_slice(flow):
    task = flow.function_task(inc)

    class CancelLater(RunObserver):
        def on_plan(self, plan):
            if handles[0].key in plan.nodes:
                assert handles[20].cancel() is True  # still in the backlog

    flow.add_observer(CancelLater())
    handles = [task() for _ in range(30)]
    dependent = task(handles[20])
    with pytest.raises(asyncio.CancelledError):
        await dependent
    assert handles[20].cancelled()
    rest = [h for i, h in enumerate(handles) if i != 20]
    assert await asyncio.gather(*rest) == [1] * 29


async def test_tasks_created_inside_a_slice_keep_one_flush_per_turn(flow, monkeypatch):
    queued = {"now": 0, "most": 0}
    intake = flow._intake
    schedule, turn = intake._schedule_flush, intake._flush_turn

    def counting_schedule():
        queued["now"] += 1
        queued["most"] = max(queued["most"], queued["now"])
        schedule()

    def counting_turn():
        queued["now"] -= 1
        turn()

    monkeypatch.setattr(intake, "_schedule_flush", counting_schedule)
    monkeypatch.setattr(intake, "_flush_turn", counting_turn)
    task = flow.function_task(inc)

    @flow.function_task
    async def spawner() -> int:
        return await task()  # creates a task from inside a slice's submit

    handles = [spawner() for _ in range(64)]
    assert await asyncio.gather(*handles) == [1] * 64
    assert queued["most"] <= 1, "at most one _flush_turn is queued at a time"

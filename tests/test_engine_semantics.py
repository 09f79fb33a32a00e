"""End-to-end engine semantics on the local backend."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from asyncflow_graph import LocalExecutionBackend, Plan, WorkflowEngine
from asyncflow_graph.errors import (
    BackendNotFoundError,
    CommandFailedError,
    DependencyFailureError,
    EngineClosedError,
    SerializationError,
    TaskTimeoutError,
)
from asyncflow_graph.graph import Graph

T = 5  # generous bound for waiting on events


@pytest.fixture
async def lazy(tmp_path):
    engine = await WorkflowEngine.create(
        backend=LocalExecutionBackend(), work_dir=tmp_path, execution="lazy"
    )
    yield engine
    await engine.shutdown()


# --------------------------------------------------------------------------- modes


async def test_eager_runs_never_awaited_task(flow):
    ran = asyncio.Event()

    @flow.function_task
    async def fire():
        ran.set()

    h = fire()
    assert not ran.is_set()
    await asyncio.wait_for(ran.wait(), T)
    assert h.key in flow.graph


async def test_lazy_runs_only_ancestors_when_awaited(lazy):
    calls = []

    @lazy.function_task
    async def step(name, *deps):
        calls.append(name)
        return name

    a = step("a")
    b = step("b", a)
    c = step("c", a)
    d = step("d")
    assert len(lazy.graph) == 4
    assert calls == []
    assert await b == "b"
    assert calls == ["a", "b"]
    assert not c.done() and not d.done()
    assert c.state == "PENDING"
    assert await c == "c"
    assert calls == ["a", "b", "c"]  # a ran once
    assert "d" not in calls


async def test_lazy_gather_demands(lazy):
    @lazy.function_task
    async def one():
        return 1

    @lazy.function_task
    async def add(x, y):
        return x + y

    x = one()
    assert await asyncio.gather(add(x, x), one()) == [2, 1]


async def test_pure_calls_share_one_node(flow):
    calls = []

    @flow.function_task(pure=True)
    def double(x):
        calls.append(x)
        return x * 2

    h1 = double(3)
    h2 = double(3)
    h3 = double(4)
    assert h1 is h2
    assert h1 is not h3
    assert await h1 == 6 and await h2 == 6 and await h3 == 8
    assert sorted(calls) == [3, 4]
    assert len(flow.graph) == 2


async def test_handles_are_futures(flow):
    @flow.function_task
    async def val(x):
        return x

    h = val(1)
    assert isinstance(h, asyncio.Future)
    done, pending = await asyncio.wait([h, val(2)], timeout=T)
    assert len(done) == 2 and not pending
    assert h.done() and h.result() == 1
    assert h.state == "DONE"
    assert await asyncio.gather(val(3), val(4)) == [3, 4]
    assert h.cancel() is False  # already finished


# --------------------------------------------------------------------------- failure


async def test_failure_semantics(flow):
    ran = []

    @flow.function_task
    async def bad():
        raise ValueError("boom 42")

    @flow.function_task
    async def child(x):
        ran.append("child")

    @flow.function_task
    async def grandchild(x):
        ran.append("grandchild")

    b = bad()
    c = child(b)
    g = grandchild(c)
    with pytest.raises(ValueError, match="boom 42") as info:
        await b
    root = info.value
    with pytest.raises(DependencyFailureError) as dinfo:
        await c
    assert dinfo.value.__cause__ is root
    assert dinfo.value.root_cause is root
    assert dinfo.value.failed_dependencies == ["bad"]
    with pytest.raises(DependencyFailureError) as ginfo:
        await g
    assert ginfo.value.__cause__ is dinfo.value
    assert ran == []
    assert b.state == c.state == g.state == "FAILED"


async def test_cancel_running_task_and_dependents(flow):
    started, was_cancelled, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()
    ran = []

    @flow.function_task
    async def waiter():
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            was_cancelled.set()
            raise

    @flow.function_task
    async def after(x):
        ran.append(x)

    w = waiter()
    d = after(w)
    await asyncio.wait_for(started.wait(), T)
    assert w.cancel("stop it") is True
    await asyncio.wait_for(was_cancelled.wait(), T)
    with pytest.raises(asyncio.CancelledError) as info:
        await w
    assert "stop it" in str(info.value) or info.value.args == ("stop it",)
    with pytest.raises(asyncio.CancelledError):
        await d
    assert w.state == "CANCELLED" and d.state == "CANCELLED"
    assert w.cancelled() and d.cancelled()
    assert w.cancel() is False
    assert ran == []


# --------------------------------------------------------------------------- blocks


async def test_blocks_depend_on_tasks_and_tasks_on_blocks(flow):
    members = []

    @flow.function_task
    async def inc(x):
        return x + 1

    @flow.block
    async def inner_block(x):
        h = inc(x)
        members.append(h)
        return await h

    @flow.block
    async def outer_block(x):
        return await inner_block(await inc(x)) * 10

    t1 = inc(0)  # 1
    b = outer_block(t1)  # (1+1+1)*10 = 30
    t2 = inc(b)  # 31
    assert await t2 == 31
    assert await b == 30
    assert b.state == "DONE"
    inner_handle = members[0]
    blk_key = inner_handle.node.parent
    assert blk_key is not None and blk_key.startswith("block.")
    assert inner_handle.node.workflow_id == blk_key


async def test_block_member_workflow_id_is_block_uid(flow):
    seen = []

    @flow.function_task
    async def t():
        return 1

    @flow.block
    async def blk():
        h = t()
        seen.append(h)
        return await h

    b = blk()
    assert await b == 1
    assert seen[0].node.workflow_id == b.uid
    assert seen[0].node.parent == b.key


async def test_cancel_block_cancels_members(flow):
    started, member_cancelled = asyncio.Event(), asyncio.Event()
    members = []

    @flow.function_task
    async def long():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            member_cancelled.set()
            raise

    @flow.block
    async def blk():
        h = long()
        members.append(h)
        return await h

    b = blk()
    await asyncio.wait_for(started.wait(), T)
    assert b.cancel("bye") is True
    await asyncio.wait_for(member_cancelled.wait(), T)
    with pytest.raises(asyncio.CancelledError):
        await b
    with pytest.raises(asyncio.CancelledError):
        await members[0]
    assert b.state == "CANCELLED"
    assert members[0].state == "CANCELLED"


# --------------------------------------------------------------------------- routing


async def test_unknown_backend_fails_only_that_task(flow):
    @flow.function_task(backend="nope")
    async def lost():
        return 1

    @flow.function_task
    async def ok(x=None):
        return "ok"

    h = lost()
    d = ok(h)
    with pytest.raises(KeyError) as info:
        await h
    assert isinstance(info.value, BackendNotFoundError)
    assert "nope" in str(info.value)
    with pytest.raises(DependencyFailureError):
        await d
    assert await ok() == "ok"


# --------------------------------------------------------------------------- executables


async def test_executable_shell_pipe(flow):
    @flow.executable_task
    def pipe():
        return "echo hello | tr a-z A-Z"

    assert await pipe() == "HELLO\n"


async def test_executable_argv_is_literal(flow, tmp_path):
    (tmp_path / "x").mkdir()

    @flow.executable_task
    def argv():
        return ["echo", "; rm -rf x"]

    assert await argv(task_description={"cwd": str(tmp_path)}) == "; rm -rf x\n"
    assert (tmp_path / "x").exists()


async def test_executable_shell_false(flow):
    @flow.executable_task
    def cmd():
        return "echo a;b $HOME"

    assert await cmd(task_description={"shell": False}) == "a;b $HOME\n"


async def test_executable_cwd_and_env(flow, tmp_path):
    sub = tmp_path / "wd"
    sub.mkdir()

    @flow.executable_task
    def show():
        return 'pwd; echo "$MY_TEST_VAR"'

    out = await show(task_description={"cwd": str(sub), "env": {"MY_TEST_VAR": "xyz 1"}})
    lines = out.splitlines()
    assert os.path.realpath(lines[0]) == os.path.realpath(sub)
    assert lines[1] == "xyz 1"


async def test_executable_nonzero_exit(flow):
    @flow.executable_task
    def fails():
        return "echo out; echo some-error >&2; exit 3"

    with pytest.raises(CommandFailedError) as info:
        await fails()
    assert info.value.exit_code == 3
    assert "some-error" in info.value.stderr


async def test_executable_capture_stdio(flow, tmp_path):
    @flow.executable_task(capture_stdio=True)
    def cap():
        return "echo captured"

    h = cap()
    path = await h
    expected = tmp_path / flow.uid / f"{h.uid}.stdout"
    assert Path(path) == expected
    assert expected.read_text() == "captured\n"


# --------------------------------------------------------------------------- threads / processes


async def test_sync_in_pool_async_on_loop(flow):
    loop_thread = threading.current_thread()

    @flow.function_task
    def sync_fn():
        return threading.current_thread()

    @flow.function_task
    async def async_fn():
        return threading.current_thread()

    s, a = await asyncio.gather(sync_fn(), async_fn())
    assert s is not loop_thread
    assert a is loop_thread


async def test_process_pool_backend(tmp_path):
    pool = ProcessPoolExecutor(max_workers=1)
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(), LocalExecutionBackend(pool, name="proc")],
        work_dir=tmp_path,
    )
    try:
        add_one = engine.function_task(lambda x: x + 1, backend="proc")
        get_pid = engine.function_task(lambda: os.getpid(), backend="proc")  # noqa: PLW0108
        bad = engine.function_task(lambda: threading.Lock(), backend="proc")  # noqa: PLW0108
        assert await add_one(41) == 42
        assert await get_pid() != os.getpid()
        with pytest.raises(SerializationError):
            await bad()
        assert await add_one(1) == 2  # the pool still works
    finally:
        await engine.shutdown()


# --------------------------------------------------------------------------- retries / timeout


async def test_retries_rerun_flaky_task(flow):
    attempts = []

    @flow.function_task(retries=2)
    async def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("flaky")
        return "finally"

    assert await flaky() == "finally"
    assert len(attempts) == 3


async def test_retries_exhausted_fails(flow):
    attempts = []

    @flow.function_task(retries=1)
    async def always():
        attempts.append(1)
        raise RuntimeError("always")

    with pytest.raises(RuntimeError, match="always"):
        await always()
    assert len(attempts) == 2


async def test_timeout(flow):
    ran = []

    @flow.function_task(timeout=0.2)
    async def hang():
        await asyncio.Event().wait()

    @flow.function_task
    async def after(x):
        ran.append(x)

    h = hang()
    d = after(h)
    with pytest.raises(TaskTimeoutError) as info:
        await h
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(DependencyFailureError) as dinfo:
        await d
    assert dinfo.value.root_cause is info.value
    assert ran == []


# --------------------------------------------------------------------------- graph / compile


async def test_graph_grows_and_is_immutable(flow):
    @flow.function_task
    async def t(x=None):
        return 1

    h1 = t()
    await h1
    g1 = flow.graph
    n1 = len(g1)
    assert isinstance(g1, Graph) and h1.key in g1
    h2 = t(h1)
    await h2
    g2 = flow.graph
    assert len(g2) == n1 + 1
    assert len(g1) == n1 and h2.key not in g1
    assert g2[h2.key].deps == (h1.key,)
    assert set(h2.graph) == {h1.key, h2.key}


async def test_eager_graph_includes_just_created_tasks(flow):
    @flow.function_task
    async def t(x=None):
        return 1

    a = t()
    b = t(a)
    assert a.key in flow.graph and b.key in flow.graph
    assert set(b.graph) == {a.key, b.key}
    assert set(flow.compile(b).nodes) == {a.key, b.key}
    await b


async def test_compile_returns_plan(flow):
    @flow.function_task
    async def t(x=None):
        return 1

    a = t()
    b = t(a)
    await b
    plan = flow.compile()
    assert isinstance(plan, Plan)
    assert {a.key, b.key} <= set(plan.nodes)
    assert "Plan:" in plan.explain()
    plan_b = flow.compile(a)
    assert set(plan_b.nodes) == {a.key}


async def test_lazy_compile_before_running(lazy):
    @lazy.function_task
    async def t(x=None):
        return 1

    a = t()
    b = t(a)
    plan = lazy.compile(b)
    assert set(plan.nodes) == {a.key, b.key}
    assert not a.done() and not b.done()


# --------------------------------------------------------------------------- shutdown


async def test_shutdown_twice_and_concurrently(tmp_path):
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)

    @engine.function_task
    async def t():
        return 1

    assert await t() == 1
    await asyncio.gather(engine.shutdown(), engine.shutdown())
    await engine.shutdown()
    with pytest.raises(EngineClosedError):
        t()


async def test_shutdown_cancels_unfinished(tmp_path):
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    started = asyncio.Event()

    @engine.function_task
    async def hang():
        started.set()
        await asyncio.Event().wait()

    h = hang()
    await asyncio.wait_for(started.wait(), T)
    await engine.shutdown()
    assert h.cancelled() and h.state == "CANCELLED"


async def test_two_engines_independent(tmp_path):
    e1 = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    e2 = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    try:
        assert e1.uid != e2.uid

        @e1.function_task
        def one():
            return 1

        @e2.function_task
        def two():
            return 2

        assert await one() == 1
        await e1.shutdown()
        assert await two() == 2
        assert await asyncio.gather(two(), two()) == [2, 2]
        with pytest.raises(EngineClosedError):
            one()
    finally:
        await e2.shutdown()

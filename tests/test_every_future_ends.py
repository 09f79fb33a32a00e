"""Every future ends: whatever goes wrong inside the engine's own machinery ends
exactly the futures it concerns; tasks that cannot mean anything are refused when
they are declared; blocks never wait on themselves; and what was reported once is
not reported again at exit."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap

import pytest
from procs import run_python

import asyncflow_graph as ag
from asyncflow_graph import errors
from asyncflow_graph.errors import ConfigurationError, DependencyFailureError, TaskTimeoutError

T = 5


async def ends(*handles):
    """The outcomes of ``handles``, which must all end within T seconds."""
    return await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), T)


# --------------------------------------------------------------------------- internal failures


@dataclasses.dataclass
class Scale:  # eq=True makes instances unhashable
    factor: int

    def __call__(self, x):
        return x * self.factor


async def test_an_unhashable_callable_runs_and_fails_nobody_else(flow):
    scale = flow.function_task(Scale(3))

    @flow.function_task
    async def innocent():
        return "ok"

    assert await ends(scale(2), innocent()) == [6, "ok"]


async def test_a_builder_that_cannot_be_called_fails_alone(flow):
    @flow.executable_task
    async def build(x):
        return f"echo {x}"

    @flow.function_task
    async def innocent():
        return "ok"

    bad = build(1, 2)  # one argument too many: the builder's coroutine cannot be made
    good = innocent()
    after = build(bad)
    out = await ends(bad, good, after)
    assert isinstance(out[0], TypeError)
    assert out[1] == "ok"
    assert isinstance(out[2], DependencyFailureError)


async def test_a_task_raising_stop_iteration_fails_and_so_do_its_dependents(flow):
    @flow.function_task
    def stops():
        raise StopIteration("done early")

    @flow.function_task
    async def after(x):
        return x

    @flow.function_task
    async def innocent():
        return "ok"

    s = stops()
    out = await ends(s, after(s), innocent())
    assert isinstance(out[0], RuntimeError) and "StopIteration" in str(out[0])
    assert isinstance(out[0].__cause__, StopIteration)
    assert isinstance(out[1], DependencyFailureError) and out[2] == "ok"


async def test_a_compile_error_inside_the_engine_ends_exactly_its_task(flow, monkeypatch):
    import asyncflow_graph.executor.intake as intake

    real = intake.compile_plan

    def poisoned(nodes, *args, **kwargs):
        if any(n.name == "poison" for n in nodes.values()):
            raise RuntimeError("compiler bug")
        return real(nodes, *args, **kwargs)

    monkeypatch.setattr(intake, "compile_plan", poisoned)

    @flow.function_task
    async def poison():
        return 1

    @flow.function_task
    async def innocent(x=None):
        return "ok"

    p = poison()
    out = await ends(innocent(), p, innocent(p), innocent())
    assert out[0] == "ok" and out[3] == "ok"
    assert isinstance(out[1], errors.EngineError)
    assert "poison" in str(out[1]) and "compiler bug" in str(out[1])
    assert isinstance(out[1].__cause__, RuntimeError)
    assert isinstance(out[2], DependencyFailureError)


async def test_a_dispatch_error_inside_the_engine_ends_exactly_its_task(flow, monkeypatch):
    import asyncflow_graph.executor.driver as driver

    real = driver.Work

    def work(unit, nodes, inputs, payload=None):
        if nodes[0].name == "poison":
            raise RuntimeError("dispatch bug")
        return real(unit, nodes, inputs, payload)

    monkeypatch.setattr(driver, "Work", work)

    @flow.function_task
    async def poison():
        return 1

    @flow.function_task
    async def innocent():
        return "ok"

    out = await ends(innocent(), poison(), innocent())
    assert out[0] == out[2] == "ok"
    assert isinstance(out[1], errors.EngineError) and "dispatch bug" in str(out[1])


# --------------------------------------------------------------------------- generators


def _gen():
    yield 1


async def _agen():
    yield 1


@pytest.mark.parametrize("func", [_gen, _agen], ids=["generator", "async-generator"])
@pytest.mark.parametrize("kind", ["function_task", "executable_task", "prompt_task"])
async def test_generator_functions_are_refused_at_decoration(flow, func, kind):
    with pytest.raises(TypeError, match="generator"):
        getattr(flow, kind)(func)
    with pytest.raises(TypeError, match="generator"):
        getattr(flow, kind)(backend="default")(func)
    with pytest.raises(TypeError, match="generator"):
        getattr(ag, kind)(func)


async def test_an_async_generator_block_is_refused_with_the_right_reason(flow):
    with pytest.raises(TypeError, match="generator"):
        flow.block(_agen)


# --------------------------------------------------------------------------- blocks


async def test_a_block_awaiting_itself_fails_instead_of_hanging(flow):
    me = {}

    @flow.block
    async def selfish():
        return await me["handle"]

    me["handle"] = selfish()
    (out,) = await ends(me["handle"])
    assert isinstance(out, ConfigurationError)
    assert "selfish" in str(out) and "itself" in str(out)


async def test_two_blocks_awaiting_each_other_fail_instead_of_hanging(flow):
    handles = {}
    started = asyncio.Event()

    @flow.block
    async def first():
        started.set()
        return await handles["second"]

    @flow.block
    async def second():
        await started.wait()
        return await handles["first"]

    handles["first"], handles["second"] = first(), second()
    out = await ends(handles["first"], handles["second"])
    assert any(isinstance(o, ConfigurationError) and "first" in str(o) for o in out)
    assert all(isinstance(o, BaseException) for o in out)


async def test_a_block_awaiting_its_own_dependent_fails_instead_of_hanging(flow):
    later = {}

    @flow.block
    async def outer():
        return await later["dependent"]

    @flow.function_task
    async def dependent(x):
        return x

    b = outer()
    later["dependent"] = dependent(b)
    out = await ends(b, later["dependent"])
    assert isinstance(out[0], ConfigurationError) and "dependent" in str(out[0])
    assert isinstance(out[1], DependencyFailureError)


async def test_a_block_awaiting_its_members_still_works(flow):
    @flow.function_task
    async def member(x):
        return x + 1

    @flow.block
    async def outer():
        inner = member(1)
        return await member(await inner)

    assert await ends(outer()) == [3]


async def test_block_timeout_ends_the_block_and_cancels_its_members(flow):
    member_started = asyncio.Event()
    members = []

    @flow.function_task
    async def member():
        member_started.set()
        await asyncio.Event().wait()

    @flow.block(timeout=0.2)
    async def slow():
        members.append(member())
        await members[0]

    (out,) = await ends(slow())
    assert isinstance(out, TaskTimeoutError) and "slow" in str(out)
    assert member_started.is_set()
    await asyncio.wait_for(asyncio.wait(members), T)
    assert members[0].cancelled()


async def test_block_retries_are_refused_at_decoration(flow):
    with pytest.raises(ConfigurationError, match="retries"):

        @flow.block(retries=1)
        async def body():
            return 1


# --------------------------------------------------------------------------- script face


async def test_compile_and_compute_refuse_what_is_not_a_task(flow):
    @flow.function_task
    async def handle_task():
        return 1

    h = handle_task()
    for call in (ag.compile, ag.compute):
        with pytest.raises(ConfigurationError, match=flow.uid):
            await asyncio.to_thread(call, h)
        with pytest.raises(ConfigurationError, match="call it"):
            await asyncio.to_thread(call, handle_task)
        with pytest.raises(ConfigurationError, match="no task"):
            await asyncio.to_thread(call, 42)
    await h


def test_compute_still_passes_plain_values_through_beside_tasks():
    @ag.function_task
    def one():
        return 1

    assert ag.compute([one(), 5]) == ([1, 5],)


# --------------------------------------------------------------------------- clean exits

QUIET_EXIT = """
import asyncio, gc
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

async def main():
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def root():
        raise ValueError("the root cause")

    @flow.function_task
    async def dependent(x):
        return x

    @flow.executable_task
    async def sleeper():
        return "sleep 30"

    try:
        await dependent(dependent(root()))
    except Exception as exc:
        print("reported:", type(exc).__name__)
    sleeper()
    await asyncio.sleep(0.3)  # the command runs when the engine shuts down
    await flow.shutdown()
    gc.collect()

asyncio.run(main())
print("exited")
"""


def test_a_failure_reported_through_a_dependent_is_not_reported_again_at_exit(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text(textwrap.dedent(QUIET_EXIT))
    proc = run_python([str(script)], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "reported: DependencyFailureError" in proc.stdout and "exited" in proc.stdout
    assert "never retrieved" not in proc.stderr
    assert "Event loop is closed" not in proc.stderr
    assert "Exception ignored" not in proc.stderr


NEVER_RETRIEVED = """
import asyncio, gc
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

async def main():
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def root():
        raise ValueError("nobody looked at this")

    @flow.function_task
    async def dependent(x):
        return x

    h = dependent(root())
    await asyncio.wait([h])
    await flow.shutdown()
    del h
    gc.collect()

asyncio.run(main())
"""


def test_a_failure_nobody_retrieved_is_still_reported_once(tmp_path):
    script = tmp_path / "loud.py"
    script.write_text(textwrap.dedent(NEVER_RETRIEVED))
    proc = run_python([str(script)], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("never retrieved") == 1
    assert "nobody looked at this" in proc.stderr


FIRE_AND_FORGET = """
import asyncio, gc
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

async def main():
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def alone():
        raise ValueError("a failure nobody kept a handle of")

    alone()  # no handle kept: the failure must still be reported, once
    await asyncio.sleep(0.2)
    await flow.shutdown()
    gc.collect()

asyncio.run(main())
"""


def test_a_failure_whose_handle_nobody_kept_is_reported_once(tmp_path):
    script = tmp_path / "alone.py"
    script.write_text(textwrap.dedent(FIRE_AND_FORGET))
    proc = run_python([str(script)], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("never retrieved") == 1
    assert "a failure nobody kept a handle of" in proc.stderr

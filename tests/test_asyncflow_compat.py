"""The AsyncFlow 0.6 compatible face of asyncflow_graph.

Tests marked ``# AsyncFlow`` in their docstring describe behaviour radical.asyncflow 0.6 has
too (they were run against it); tests marked ``# extension`` describe where asyncflow_graph
deliberately differs from AsyncFlow (see docs/DESIGN: sync functions accepted, futures nested
in containers are dependencies, builders see resolved values, shell quoting kept, a task
routed to an unknown backend fails alone, duplicate backend names rejected, ``async with``).

Synchronisation is done with events only: ``threading.Event`` for task bodies that may run
in a worker thread, ``asyncio.Event`` for bodies that run on the engine's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import pytest
from asyncflow_style_backend import AsyncFlowStyleBackend

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError

TASK_KEYS = {
    "uid",
    "name",
    "args",
    "kwargs",
    "workflow_id",
    "task_backend_specific_kwargs",
    "target_backend",
    "capture_stdio",
    "metadata",
}
WAIT = 30  # seconds; an upper bound for event waits, never a synchronisation delay


@pytest.fixture
async def flow():
    backend = await LocalExecutionBackend()
    engine = await WorkflowEngine.create(backend=backend)
    try:
        yield engine
    finally:
        await engine.shutdown()


async def wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT), "timed out waiting for a task body"


# --------------------------------------------------------------------------- engine creation


async def test_create_with_one_backend():
    """AsyncFlow"""
    backend = await LocalExecutionBackend(name="only")
    engine = await WorkflowEngine.create(backend=backend)
    try:
        assert engine.backend is backend
        assert engine.backend.name == "only"

        @engine.function_task
        async def double(x):
            return 2 * x

        assert await double(21) == 42
    finally:
        await engine.shutdown()


async def test_create_with_list_first_is_default():
    """AsyncFlow"""
    compute = await LocalExecutionBackend(name="compute")
    ai = NoopExecutionBackend(name="ai")
    engine = await WorkflowEngine.create(backend=[compute, ai])
    try:
        assert engine.backend is compute

        @engine.function_task
        async def local_work():
            return "ran locally"

        @engine.function_task(backend="ai")
        async def routed_work():
            return "never runs on noop"

        @engine.prompt_task(backend="ai")
        async def ask():
            return "What is 6 x 7?"

        results = await asyncio.gather(local_work(), routed_work(), ask())
        assert results == ["ran locally", "Dummy Output", "Dummy Prompt Output"]
    finally:
        await engine.shutdown()


async def test_create_with_list_order_decides_default():
    """AsyncFlow"""
    ai = NoopExecutionBackend(name="ai")
    compute = await LocalExecutionBackend(name="compute")
    engine = await WorkflowEngine.create(backend=[ai, compute])
    try:
        assert engine.backend is ai

        @engine.function_task
        async def work():
            return "real"

        @engine.function_task(backend="compute")
        async def routed():
            return "real"

        assert await work() == "Dummy Output"
        assert await routed() == "real"
    finally:
        await engine.shutdown()


async def test_duplicate_backend_names_rejected():
    """extension: AsyncFlow silently keeps the last backend with a given name."""
    with pytest.raises(ValueError, match="x"):
        await WorkflowEngine.create(
            backend=[NoopExecutionBackend(name="x"), NoopExecutionBackend(name="x")]
        )


async def test_dry_run_without_backend_uses_noop():
    """AsyncFlow"""
    engine = await WorkflowEngine.create(dry_run=True)
    ran = []
    try:
        assert isinstance(engine.backend, NoopExecutionBackend)

        @engine.function_task
        async def work():
            ran.append(1)
            return "real"

        @engine.executable_task
        async def command():
            return "echo real"

        assert await work() == "Dummy Output"
        assert await command() == "Dummy Output"
        assert ran == []
    finally:
        await engine.shutdown()


async def test_create_without_backend_uses_local():
    """AsyncFlow"""
    engine = await WorkflowEngine.create()
    try:
        assert isinstance(engine.backend, LocalExecutionBackend)

        @engine.function_task
        async def work():
            return "real"

        assert await work() == "real"
    finally:
        await engine.shutdown()


def test_direct_constructor_outside_event_loop_raises():
    """AsyncFlow"""
    with pytest.raises(RuntimeError):
        WorkflowEngine(backend=NoopExecutionBackend())


def test_local_backend_rejects_non_executor():
    """AsyncFlow"""
    with pytest.raises(TypeError):
        LocalExecutionBackend(executor="threads")


async def test_shutdown_twice_is_safe():
    """AsyncFlow"""
    engine = await WorkflowEngine.create(backend=await LocalExecutionBackend())

    @engine.function_task
    async def work():
        return 1

    assert await work() == 1
    await engine.shutdown()
    await engine.shutdown()


async def test_concurrent_shutdowns_are_safe():
    """AsyncFlow"""
    engine = await WorkflowEngine.create(backend=await LocalExecutionBackend())
    await asyncio.gather(engine.shutdown(), engine.shutdown())
    await engine.shutdown()


async def test_engine_as_async_context_manager():
    """extension: AsyncFlow's engine is not an async context manager."""
    backend = await AsyncFlowStyleBackend()
    async with await WorkflowEngine.create(backend=backend) as engine:

        @engine.function_task
        async def work(x):
            return x + 1

        assert await work(1) == 2
    assert backend.shutdown_calls == 1
    await engine.shutdown()  # already closed: still safe


# ------------------------------------------------------------------------------ decorators


async def test_bare_and_parameterised_decorators(flow):
    """AsyncFlow"""

    @flow.function_task
    async def bare(x):
        return x + 1

    @flow.function_task()
    async def empty_call(x):
        return x + 2

    @flow.function_task(service=False, backend=None, capture_stdio=False)
    async def with_options(x):
        return x + 3

    @flow.executable_task
    async def bare_cmd():
        return "echo bare"

    @flow.executable_task(capture_stdio=False)
    async def param_cmd():
        return "echo param"

    @flow.block
    async def bare_block(x):
        return await bare(x)

    @flow.block()
    async def param_block(x):
        return await empty_call(x)

    results = await asyncio.gather(
        bare(0),
        empty_call(0),
        with_options(0),
        bare_cmd(),
        param_cmd(),
        bare_block(10),
        param_block(10),
    )
    assert results == [1, 2, 3, "bare\n", "param\n", 11, 12]


async def test_service_option_must_be_bool(flow):
    """AsyncFlow"""
    with pytest.raises(TypeError):

        @flow.function_task(service="yes")
        async def work():
            return 1


async def test_task_description_default_must_be_dict(flow):
    """AsyncFlow"""
    with pytest.raises(TypeError):

        @flow.function_task
        async def work(task_description=None):
            return 1

    with pytest.raises(TypeError):

        @flow.function_task
        async def work2(task_description=[("cpus", 1)]):
            return 1


async def test_call_time_task_description_must_be_dict(flow):
    """AsyncFlow"""

    @flow.function_task
    async def work(x):
        return x

    with pytest.raises(TypeError):
        work(1, task_description=["cpus"])


async def test_reserved_kwargs_are_stripped(flow):
    """AsyncFlow"""

    @flow.function_task
    async def work(x, task_description={"cpus": 1}, **kwargs):
        return x, task_description, kwargs

    fut = work(1, task_description={"gpus": 2}, workflow_id="wf-explicit", extra=5)
    x, seen_description, seen_kwargs = await fut
    assert x == 1
    # The body sees its own definition-time default, never the call-time description.
    assert seen_description == {"cpus": 1}
    assert seen_kwargs == {"extra": 5}
    assert dict(fut.task["task_backend_specific_kwargs"]) == {"cpus": 1, "gpus": 2}
    assert fut.task["workflow_id"] == "wf-explicit"
    assert "task_description" not in fut.task["kwargs"]
    assert "workflow_id" not in fut.task["kwargs"]
    assert dict(fut.task["kwargs"]) == {"extra": 5}


async def test_plain_sync_functions_are_accepted(flow):
    """extension: AsyncFlow raises TypeError for non-async functions."""

    @flow.function_task
    def inc(x):
        return x + 1

    @flow.function_task(backend=None)
    def add(a, b):
        return a + b

    fut = inc(1)
    assert isinstance(fut, asyncio.Future)
    assert await add(inc(fut), 10) == 13


# -------------------------------------------------------------------------------- futures


async def test_call_returns_asyncio_future_immediately(flow):
    """AsyncFlow"""

    @flow.function_task
    async def work(x):
        return x * 2

    fut = work(4)
    assert isinstance(fut, asyncio.Future)
    assert not asyncio.iscoroutine(fut)
    assert fut.state == "PENDING"
    assert await fut == 8
    assert fut.done()
    assert fut.result() == 8
    assert fut.state == "DONE"

    done, pending = await asyncio.wait([work(1), work(2)], timeout=WAIT)
    assert not pending
    assert sorted(f.result() for f in done) == [2, 4]


async def test_failed_task_state_and_exception(flow):
    """AsyncFlow"""

    @flow.function_task
    async def boom():
        raise ValueError("boom!")

    fut = boom()
    with pytest.raises(ValueError, match="boom!"):
        await fut
    assert fut.state == "FAILED"
    assert isinstance(fut.exception(), ValueError)


async def test_id_and_task_description_dict(flow):
    """AsyncFlow"""

    @flow.function_task
    async def work(a, b, k=None):
        return (a, b, k)

    fut = work(1, 2, k=3)
    other = work(4, 5)
    assert await fut == (1, 2, 3)
    await other
    assert isinstance(fut.id, str) and fut.id
    assert fut.id != other.id
    task = fut.task
    assert isinstance(task, Mapping)
    assert TASK_KEYS <= set(task), TASK_KEYS - set(task)
    assert isinstance(task["uid"], str) and task["uid"]
    assert task["uid"] != other.task["uid"]
    assert task["name"] == "work"
    assert tuple(task["args"]) == (1, 2)
    assert dict(task["kwargs"]) == {"k": 3}
    assert task["workflow_id"] is None
    assert dict(task["task_backend_specific_kwargs"]) == {}
    assert task["target_backend"] is None
    assert task["capture_stdio"] is False
    assert isinstance(task["metadata"], Mapping)


async def test_task_dict_records_routing_and_capture_stdio():
    """AsyncFlow"""
    compute = await LocalExecutionBackend(name="compute")
    engine = await WorkflowEngine.create(backend=[compute, NoopExecutionBackend(name="ai")])
    try:

        @engine.function_task(backend="ai")
        async def routed():
            return 1

        @engine.executable_task(capture_stdio=True, backend="ai")
        async def cmd():
            return "echo hi"

        a, b = routed(), cmd()
        await asyncio.gather(a, b)
        assert a.task["target_backend"] == "ai"
        assert a.task["capture_stdio"] is False
        assert b.task["capture_stdio"] is True
    finally:
        await engine.shutdown()


async def test_unawaited_task_still_runs(flow):
    """AsyncFlow: execution is eager."""
    ran = threading.Event()

    @flow.function_task
    async def side_effect():
        ran.set()
        return "done"

    fut = side_effect()  # never awaited by the test
    await wait_thread_event(ran)
    del fut


async def test_local_backend_reports_running(flow):
    """extension: AsyncFlow's LocalExecutionBackend never reports RUNNING."""
    started, release = threading.Event(), threading.Event()

    @flow.function_task
    async def slow():
        started.set()
        await asyncio.to_thread(release.wait, WAIT)
        return "slow"

    fut = slow()
    try:
        await wait_thread_event(started)
        # The RUNNING report may trail the body's first line by a loop turn or two.
        seen = []
        for _ in range(1000):
            seen.append(fut.state)
            if fut.state == "RUNNING":
                break
            await asyncio.sleep(0)
        assert fut.state == "RUNNING", seen[-5:]
    finally:
        release.set()
    assert await fut == "slow"
    assert fut.state == "DONE"


async def test_cancel_pending_task_cancels_dependents(flow):
    """AsyncFlow"""
    started, release = threading.Event(), threading.Event()

    @flow.function_task
    async def slow():
        started.set()
        await asyncio.to_thread(release.wait, WAIT)
        return "slow"

    @flow.function_task
    async def after(x):
        return f"after {x}"

    upstream = slow()
    middle = after(upstream)
    leaf = after(middle)
    try:
        await wait_thread_event(started)  # upstream runs, so middle and leaf are registered
        assert middle.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await middle
        assert middle.cancelled()
        assert middle.state == "CANCELLED"
        with pytest.raises(asyncio.CancelledError):
            await leaf
        assert leaf.state == "CANCELLED"
    finally:
        release.set()
    assert await upstream == "slow"
    assert upstream.cancel() is False


# ---------------------------------------------------------------------------- dependencies


async def test_dependencies_through_args_and_kwargs(flow):
    """AsyncFlow"""
    order = []

    @flow.function_task
    async def source(x):
        order.append(f"source {x}")
        return x

    @flow.function_task
    async def add(a, b=0):
        order.append("add")
        return a + b

    a, b = source(1), source(2)
    total = add(a, b=b)
    assert await total == 3
    assert order[-1] == "add"
    assert sorted(order[:2]) == ["source 1", "source 2"]
    assert await add(total, b=total) == 6


async def test_dependencies_nested_in_containers(flow):
    """extension: AsyncFlow passes raw futures found inside lists/dicts."""

    @flow.function_task
    async def source(x):
        return x

    @flow.function_task
    async def combine(values, mapping, pair=()):
        return sum(values) + sum(mapping.values()) + sum(pair)

    a, b, c, d = source(1), source(2), source(3), source(4)
    result = combine([a, b], {"c": c}, pair=(d, 10))
    assert await result == 1 + 2 + 3 + 4 + 10

    @flow.function_task
    async def deep(arg):
        return arg

    assert await deep({"outer": [a, {"inner": (b, c)}]}) == {"outer": [1, {"inner": (2, 3)}]}


async def test_dependency_failure_error(flow):
    """AsyncFlow"""
    executed = []

    @flow.function_task
    async def fetch():
        return 21

    @flow.function_task
    async def explode():
        raise ValueError("sensor offline")

    @flow.function_task
    async def combine(a, b):
        executed.append("combine")
        return a + b

    @flow.function_task
    async def report(value):
        executed.append("report")
        return value

    good, bad = fetch(), explode()
    combined = combine(good, b=bad)
    final = report(combined)

    with pytest.raises(DependencyFailureError) as info:
        await combined
    exc = info.value
    assert exc.failed_dependencies == ["explode"]
    assert isinstance(exc.root_cause, ValueError)
    assert str(exc.root_cause) == "sensor offline"
    assert exc.__cause__ is exc.root_cause
    assert "combine" in str(exc)
    assert combined.state == "FAILED"

    with pytest.raises(DependencyFailureError) as info:
        await final
    assert info.value.failed_dependencies == ["combine"]
    assert isinstance(info.value.root_cause, DependencyFailureError)
    assert isinstance(info.value.root_cause.root_cause, ValueError)

    assert await good == 21
    assert executed == []


def test_dependency_failure_error_constructor():
    """AsyncFlow"""
    cause = ValueError("x")
    err = DependencyFailureError("msg", failed_dependencies=["a"], root_cause=cause)
    assert err.failed_dependencies == ["a"]
    assert err.root_cause is cause
    assert err.__cause__ is cause
    bare = DependencyFailureError("msg")
    assert bare.failed_dependencies == []
    assert bare.root_cause is None
    assert isinstance(bare, Exception)


async def test_unknown_backend_fails_only_that_task(flow):
    """extension: AsyncFlow cancels every task and kills the engine instead."""

    @flow.function_task
    async def work(x):
        return x

    @flow.function_task(backend="does-not-exist")
    async def lost(x):
        return x

    @flow.function_task
    async def child(x):
        return x

    before = work(1)
    bad = lost(2)
    orphan = child(bad)
    with pytest.raises(KeyError):
        await bad
    assert bad.state == "FAILED"
    with pytest.raises(DependencyFailureError) as info:
        await orphan
    assert isinstance(info.value.root_cause, KeyError)
    assert await before == 1
    assert await work(3) == 3  # the engine keeps working


# --------------------------------------------------------------------------- workflow ids


async def test_workflow_scope_tags_tasks(flow):
    """AsyncFlow"""

    @flow.function_task
    async def work(x):
        return x

    async def branch(x):
        fut = work(x)
        await fut
        return fut

    async with flow.workflow_scope("experiment-42") as wid:
        assert wid == "experiment-42"
        inside = work(1)
        override = work(2, workflow_id="side")
        branches = await asyncio.gather(branch(3), branch(4))
        await asyncio.gather(inside, override)
    outside = work(5)
    await outside

    assert inside.task["workflow_id"] == "experiment-42"
    assert override.task["workflow_id"] == "side"
    assert [b.task["workflow_id"] for b in branches] == ["experiment-42"] * 2
    assert outside.task["workflow_id"] is None

    async with flow.workflow_scope() as auto:
        fut = work(6)
        await fut
    assert auto.startswith("wf-")
    assert fut.task["workflow_id"] == auto


# ----------------------------------------------------------------------------- executables


async def test_executable_returns_stdout(flow):
    """AsyncFlow"""

    @flow.executable_task
    async def hello():
        return "echo hello"

    fut = hello()
    assert await fut == "hello\n"
    assert fut.state == "DONE"


async def test_executable_shell_pipe(flow):
    """AsyncFlow"""

    @flow.executable_task
    async def shout():
        return "echo abc | tr a-z A-Z"

    assert await shout() == "ABC\n"


async def test_executable_exec_mode_has_no_shell(flow):
    """AsyncFlow"""

    @flow.executable_task
    async def literal():
        return "echo a | b"

    assert await literal(task_description={"shell": False}) == "a | b\n"


async def test_executable_keeps_shell_quoting(flow):
    """extension: AsyncFlow re-joins shlex tokens and prints 'a b'."""

    @flow.executable_task
    async def spaced():
        return 'echo "a   b"'

    assert await spaced() == "a   b\n"


async def test_executable_failure_is_runtime_error(flow):
    """AsyncFlow"""

    @flow.executable_task
    async def missing():
        return "ls /nonexistent-dir-for-asyncflow-tests"

    fut = missing()
    with pytest.raises(RuntimeError, match="nonexistent-dir-for-asyncflow-tests"):
        await fut
    assert fut.state == "FAILED"


async def test_executable_builder_must_return_command(flow):
    """AsyncFlow"""

    @flow.executable_task
    async def empty():
        return ""

    @flow.executable_task
    async def not_a_string():
        return 42

    with pytest.raises(ValueError):
        await empty()
    with pytest.raises(ValueError):
        await not_a_string()


async def test_executable_builder_sees_dependency_values(flow):
    """extension: AsyncFlow runs the builder at call time with the raw future."""

    @flow.function_task
    async def answer():
        return 42

    @flow.executable_task
    async def show(value):
        return f"echo value={value}"

    assert await show(answer()) == "value=42\n"


# --------------------------------------------------------------------------------- prompts


async def test_prompt_on_local_backend_is_not_implemented(flow):
    """AsyncFlow"""

    @flow.prompt_task
    async def ask():
        return "hello?"

    @flow.function_task
    async def work():
        return "still fine"

    fut = ask()
    with pytest.raises(NotImplementedError):
        await fut
    assert fut.state == "FAILED"
    assert await work() == "still fine"


async def test_prompt_builder_must_return_string():
    """AsyncFlow (on a backend that runs builders: Noop is a dry run and runs no user code)"""
    engine = await WorkflowEngine.create(backend=await AsyncFlowStyleBackend(name="ai"))
    try:

        @engine.prompt_task
        async def empty():
            return ""

        with pytest.raises(ValueError):
            await empty()
    finally:
        await engine.shutdown()


# ---------------------------------------------------------------------------------- blocks


async def test_blocks(flow):
    """AsyncFlow"""
    members = []

    @flow.function_task
    async def work(x):
        return x * 10

    @flow.block
    async def pipeline(x):
        fut = work(x)
        members.append(fut)
        return await fut + 1

    @flow.block
    async def fails():
        raise KeyError("inside block")

    blk = pipeline(work(1))
    assert isinstance(blk, asyncio.Future)
    assert await work(blk) == 1010
    assert await blk == 101
    assert blk.state == "DONE"
    assert isinstance(blk.block, Mapping)
    assert blk.block["name"] == "pipeline"
    # Inside a block body the workflow id is the block's uid.
    assert members[0].task["workflow_id"] == blk.block["uid"]

    bad = fails()
    with pytest.raises(KeyError):
        await bad
    assert bad.state == "FAILED"


# ------------------------------------------------------------------- third-party backends


async def test_third_party_backend_receives_asyncflow_task_dicts():
    """AsyncFlow"""
    backend = await AsyncFlowStyleBackend()
    engine = await WorkflowEngine.create(backend=backend)
    try:
        assert engine.backend is backend
        assert backend.is_attached is True
        assert engine.uid in backend.attached_to

        @engine.function_task
        async def source():
            return 20

        @engine.function_task
        async def add(a, k=0):
            return a + k

        @engine.executable_task
        async def hello():
            return "echo hi"

        @engine.function_task
        async def boom():
            raise ZeroDivisionError("nope")

        a = source()
        b = add(a, k=3)
        e = hello()
        assert await b == 23
        assert await e == "hi\n"
        bad = boom()
        with pytest.raises(ZeroDivisionError, match="nope"):
            await bad
        assert (a.state, b.state, e.state, bad.state) == ("DONE", "DONE", "DONE", "FAILED")

        by_name = {t["name"]: t for t in backend.received}
        assert set(by_name) == {"source", "add", "hello", "boom"}
        expected = TASK_KEYS | {"function", "executable"}
        for task in backend.received:
            assert expected <= set(task), expected - set(task)
        assert tuple(by_name["add"]["args"]) == (20,)
        assert dict(by_name["add"]["kwargs"]) == {"k": 3}
        assert by_name["hello"]["function"] is None
        assert by_name["hello"]["executable"] == "echo"
        assert list(by_name["hello"]["arguments"]) == ["hi"]
        assert by_name["source"]["executable"] is None

        for task in backend.received:
            states = [s for uid, s in backend.reported if uid == task["uid"]]
            assert states[0] == "RUNNING"
            assert states[-1] in {"DONE", "FAILED"}
        # The dependency was submitted only after its upstream finished.
        positions = [(uid, s) for uid, s in backend.reported]
        assert positions.index((by_name["source"]["uid"], "DONE")) < positions.index(
            (by_name["add"]["uid"], "RUNNING")
        )
    finally:
        await engine.shutdown()
    assert backend.shutdown_calls == 1


async def test_third_party_backend_running_state_and_cancel():
    """AsyncFlow"""
    backend = await AsyncFlowStyleBackend()
    engine = await WorkflowEngine.create(backend=backend)
    started, never = asyncio.Event(), asyncio.Event()
    try:

        @engine.function_task
        async def wait_forever():
            started.set()
            await never.wait()

        fut = wait_forever()
        await asyncio.wait_for(started.wait(), WAIT)
        assert fut.state == "RUNNING"
        assert fut.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert fut.state == "CANCELLED"
    finally:
        await engine.shutdown()
    # The future ends at once; shutdown waits for the backend's own cancel to land.
    assert backend.reported[-1] == (fut.key, "CANCELED")


async def test_third_party_backend_routed_by_name():
    """AsyncFlow"""
    compute = await LocalExecutionBackend(name="compute")
    gpu = AsyncFlowStyleBackend(name="gpu")
    engine = await WorkflowEngine.create(backend=[compute, gpu])
    try:

        @engine.function_task
        async def on_compute():
            return "compute"

        @engine.function_task(backend="gpu")
        async def on_gpu(x):
            return f"gpu got {x}"

        assert await on_gpu(on_compute()) == "gpu got compute"
        assert [t["name"] for t in gpu.received] == ["on_gpu"]
        assert gpu.received[0]["target_backend"] == "gpu"
    finally:
        await engine.shutdown()


async def test_third_party_prompt_builder_sees_dependency_values():
    """extension: AsyncFlow would build the prompt from the future's repr."""
    ai = AsyncFlowStyleBackend(name="ai", responder=str.upper)
    engine = await WorkflowEngine.create(backend=[await LocalExecutionBackend(), ai])
    try:

        @engine.function_task
        async def topic():
            return "graphs"

        @engine.prompt_task(backend="ai")
        async def ask(subject):
            return f"tell me about {subject}"

        assert await ask(topic()) == "TELL ME ABOUT GRAPHS"
        assert ai.received[0]["prompt"] == "tell me about graphs"
    finally:
        await engine.shutdown()

"""Bad input: each mistake gets a clear error at the earliest point, naming the
problem and the fix, and nothing else is disturbed."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from asyncflow_graph import InputFile, LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import (
    AsyncFlowGraphError,
    BackendNotFoundError,
    ConfigurationError,
    DependencyFailureError,
    MissingInputError,
    SerializationError,
    TaskBuildError,
    UnknownOptionError,
)


async def still_works(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def ok() -> str:
        return "ok"

    assert await ok() == "ok"


async def test_decorating_a_non_callable(flow):
    with pytest.raises(TypeError, match="expects a function"):
        flow.function_task(42)
    await still_works(flow)


async def test_sync_block_is_refused_at_decoration(flow):
    with pytest.raises(TypeError, match="async def"):

        @flow.block
        def not_async():
            return 1


async def test_unknown_option_suggests_the_right_one(flow):
    with pytest.raises(UnknownOptionError, match="did you mean 'retries'") as info:

        @flow.function_task(retires=2)
        def f():
            return 1

    assert isinstance(info.value, TypeError) and isinstance(info.value, AsyncFlowGraphError)
    with pytest.raises(ConfigurationError, match="timeout= must be a positive number"):
        flow.function_task(timeout=-1)


async def test_duplicate_backend_names():
    with pytest.raises(ConfigurationError, match="unique.*'x'.*name="):
        await WorkflowEngine.create(
            backend=[NoopExecutionBackend(name="x"), NoopExecutionBackend(name="x")]
        )


async def test_backend_missing_required_methods():
    class NotABackend:
        name = "broken"

    with pytest.raises(ConfigurationError, match="lacks submit_tasks, register_callback"):
        await WorkflowEngine.create(backend=NotABackend())


async def test_unknown_backend_name_fails_that_task_only(flow):
    @flow.function_task(backend="gpu")
    async def lost():
        return 1

    @flow.function_task
    async def after(x):
        return x

    bad = lost()
    dependent = after(bad)
    with pytest.raises(KeyError) as info:
        await bad
    assert isinstance(info.value, BackendNotFoundError)
    assert "no backend named 'gpu'" in str(info.value) and "registered: 'default'" in str(
        info.value
    )
    with pytest.raises(DependencyFailureError):
        await dependent
    await still_works(flow)


@pytest.mark.parametrize("bad", ["", "   ", None, 3, []])
async def test_bad_commands(flow, bad):
    @flow.executable_task
    async def cmd():
        return bad

    with pytest.raises(TaskBuildError, match="non-empty command string or"):
        await cmd()
    await still_works(flow)


@pytest.mark.parametrize("bad", ["", 7, ["a"]])
async def test_bad_prompts(bad):
    from asyncflow_style_backend import AsyncFlowStyleBackend

    flow = await WorkflowEngine.create(backend=await AsyncFlowStyleBackend(name="ai"))
    try:

        @flow.prompt_task
        async def ask():
            return bad

        with pytest.raises(ValueError, match="non-empty string prompt"):
            await ask()
    finally:
        await flow.shutdown()


async def test_task_description_must_be_a_dict(flow):
    @flow.function_task
    async def f():
        return 1

    with pytest.raises(TypeError, match="task_description= of 'f' must be a dict"):
        f(task_description=["cpu"])

    with pytest.raises(TypeError, match="must default to a dict"):

        @flow.function_task
        async def g(task_description=5):
            return 1


async def test_missing_input_file(flow, tmp_path: Path):
    @flow.function_task
    async def read(f):
        return Path(f.filepath).read_text()

    # Nothing declares nope.csv: not a compile-time error (a staging backend may
    # provide it); the function gets the object and its own read fails.
    with pytest.raises(FileNotFoundError, match="nope.csv") as info:
        await read(InputFile(str(tmp_path / "nope.csv")))
    assert not isinstance(info.value, MissingInputError)
    real = tmp_path / "yes.csv"
    real.write_text("data")
    assert await read(InputFile(real)) == "data"


async def test_unpicklable_function_for_a_process_backend(tmp_path: Path):
    lock = threading.Lock()
    flow = await WorkflowEngine.create(
        backend=LocalExecutionBackend(ProcessPoolExecutor(1), name="procs"), work_dir=tmp_path
    )
    try:

        @flow.function_task
        def holds_lock():
            with lock:
                return 1

        with pytest.raises(SerializationError, match="cannot be pickled"):
            await holds_lock()
    finally:
        await flow.shutdown()


async def test_engine_outside_a_loop_and_compute_inside_one():
    with pytest.raises(RuntimeError, match="async context"):
        await asyncio.to_thread(WorkflowEngine)

"""Error messages that show a user's value show its start and its size: a 1 MB
value never makes a 1 MB message."""

from __future__ import annotations

import asyncio

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import (
    CommandFailedError,
    ConfigurationError,
    DependencyFailureError,
    TaskBuildError,
)
from asyncflow_graph.executor.builders import make_payload
from asyncflow_graph.spec import Node, TaskKind, TaskOptions

T = 10
BIG = "x" * 1_000_000
LIMIT = 1_000  # what a bounded message stays under


def test_shown_keeps_the_start_and_gives_the_size():
    from asyncflow_graph.errors import shown

    text = shown(BIG)
    assert len(text) < LIMIT and text.startswith("'xxx") and "1,000,000 characters" in text
    assert "1,000,000 items" in shown(list(range(1_000_000)))
    assert shown(42) == "42"


async def test_a_builder_returning_a_huge_value_fails_with_a_short_message(flow):
    @flow.executable_task
    async def build():
        return {"not": BIG}

    with pytest.raises(TaskBuildError) as info:
        await asyncio.wait_for(build(), T)
    assert len(str(info.value)) < LIMIT and "dict" in str(info.value)


def test_a_prompt_builder_returning_a_huge_non_string_fails_with_a_short_message(tmp_path):
    node = Node("task.000001", "ask", TaskKind.PROMPT, str, (), {}, (), TaskOptions())
    with pytest.raises(TaskBuildError) as info:
        make_payload(node, BIG.encode(), tmp_path)
    assert len(str(info.value)) < LIMIT and "1,000,000 bytes" in str(info.value)


async def test_a_failing_huge_command_fails_with_a_short_message(flow):
    @flow.executable_task
    async def cmd():
        return "exit 3 # " + "y" * 100_000

    with pytest.raises(CommandFailedError) as info:
        await asyncio.wait_for(cmd(), T)
    assert info.value.exit_code == 3 and len(str(info.value)) < LIMIT


async def test_a_dependency_failure_names_its_root_cause_briefly(tmp_path):
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    try:

        @flow.function_task
        async def root():
            raise ValueError(BIG)

        @flow.function_task
        async def after(x):
            return x

        h = after(after(root()))
        with pytest.raises(DependencyFailureError) as info:
            await asyncio.wait_for(h, T)
        message = str(info.value)
        assert len(message) < LIMIT and "root cause: ValueError" in message
        assert info.value.origin is not None and str(info.value.origin) == BIG  # kept whole
    finally:
        await flow.shutdown()


async def test_bad_options_and_decorated_objects_give_short_messages(flow):
    with pytest.raises(ConfigurationError) as info:
        flow.function_task(timeout=[1] * 1_000_000)(lambda: 1)
    assert len(str(info.value)) < LIMIT
    with pytest.raises(TypeError) as info2:
        flow.function_task(BIG)
    assert len(str(info2.value)) < LIMIT

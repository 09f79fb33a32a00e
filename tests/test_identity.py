"""A value is never someone else's: handles, backends, session directories and
pure keys each belong to exactly one task of one engine."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

import asyncflow_graph as ag
from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import ConfigurationError
from asyncflow_graph.spec import tokenize

T = 5


async def _engine(tmp_path: Path, name: str, **kwargs) -> WorkflowEngine:
    return await WorkflowEngine.create(
        backend=LocalExecutionBackend(), work_dir=tmp_path / name, **kwargs
    )


# --------------------------------------------------------------------------- handles


@pytest.mark.parametrize("shut_down", [False, True], ids=["live", "shut-down"])
async def test_a_handle_of_another_engine_is_refused_at_call_time(tmp_path, shut_down):
    a = await _engine(tmp_path, "a")
    b = await _engine(tmp_path, "b")
    try:

        @a.function_task
        async def made_in_a():
            return "a's value"

        @b.function_task
        async def made_in_b():
            return "b's value"

        @b.function_task
        async def echo(x):
            return x

        ha, hb = made_in_a(), made_in_b()
        await asyncio.gather(ha, hb)
        assert ha.key == hb.key  # both engines count from 1: the keys alone collide
        if shut_down:
            await a.shutdown()
        for arg in (ha, [ha], {"x": (1, ha)}):
            with pytest.raises(ConfigurationError) as info:
                echo(arg)
            message = str(info.value)
            assert a.uid in message and b.uid in message and "echo" in message
        # the refused call left nothing behind: the engine still works
        assert await asyncio.wait_for(echo(hb), T) == "b's value"
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_a_handle_whose_key_the_engine_does_not_know_leaves_no_task_pending(tmp_path):
    # Engine a made more tasks than b: today b fails inside its flush callback with a
    # KeyError, and every task of that turn stays pending forever.
    a = await _engine(tmp_path, "a")
    b = await _engine(tmp_path, "b")
    try:

        @a.function_task
        async def one():
            return 1

        @b.function_task
        async def echo(x):
            return x

        handles = [one() for _ in range(5)]
        await asyncio.gather(*handles)
        innocent = echo(2)
        with pytest.raises(ConfigurationError, match=a.uid):
            echo(handles[-1])
        assert await asyncio.wait_for(innocent, T) == 2
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_script_face_and_engine_handles_do_not_mix(tmp_path):
    @ag.function_task
    def unbound():
        return "script"

    d = unbound()
    flow = await _engine(tmp_path, "a")
    try:

        @flow.function_task
        async def echo(x):
            return x

        h = echo(1)
        with pytest.raises(ConfigurationError, match="compute"):
            echo(d)  # an unbound node is not a task of this engine

        @ag.function_task
        def script_echo(x):
            return x

        with pytest.raises(ConfigurationError, match=flow.uid):
            script_echo(h)  # an engine handle is not an unbound node
        assert await h == 1
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- backends


async def test_one_backend_object_cannot_serve_two_live_engines(tmp_path):
    backend = LocalExecutionBackend()
    a = await WorkflowEngine.create(backend=backend, work_dir=tmp_path / "a")
    try:
        with pytest.raises(ConfigurationError) as info:
            await WorkflowEngine.create(backend=backend, work_dir=tmp_path / "b")
        assert a.uid in str(info.value)

        @a.function_task
        async def still_works():
            return "a"

        assert await asyncio.wait_for(still_works(), T) == "a"
    finally:
        await a.shutdown()


async def test_an_asyncflow_style_backend_object_cannot_serve_two_live_engines(tmp_path):
    from tests.asyncflow_style_backend import AsyncFlowStyleBackend

    raw = AsyncFlowStyleBackend()
    a = await WorkflowEngine.create(backend=raw, work_dir=tmp_path / "a")
    try:
        with pytest.raises(ConfigurationError, match=a.uid):
            await WorkflowEngine.create(backend=raw, work_dir=tmp_path / "b")
    finally:
        await a.shutdown()


async def test_a_backend_closed_by_its_engine_is_refused_with_a_clear_error(tmp_path):
    backend = LocalExecutionBackend()
    a = await WorkflowEngine.create(backend=backend, work_dir=tmp_path / "a")
    await a.shutdown()
    with pytest.raises(ConfigurationError, match="closed"):
        await WorkflowEngine.create(backend=backend, work_dir=tmp_path / "b")


# --------------------------------------------------------------------------- session directories


async def test_two_live_engines_cannot_share_a_session_directory(tmp_path):
    a = await WorkflowEngine.create(backend=NoopExecutionBackend(), uid="s", work_dir=tmp_path)
    try:
        with pytest.raises(ConfigurationError) as info:
            await WorkflowEngine.create(backend=NoopExecutionBackend(), uid="s", work_dir=tmp_path)
        assert "'s'" in str(info.value) and str(tmp_path) in str(info.value)
        # another uid, or the same uid elsewhere, is fine
        b = await WorkflowEngine.create(backend=NoopExecutionBackend(), uid="t", work_dir=tmp_path)
        c = await WorkflowEngine.create(
            backend=NoopExecutionBackend(), uid="s", work_dir=tmp_path / "elsewhere"
        )
        await b.shutdown()
        await c.shutdown()
    finally:
        await a.shutdown()
    # once the first one has shut down, its session directory may be used again
    d = await WorkflowEngine.create(backend=NoopExecutionBackend(), uid="s", work_dir=tmp_path)
    await d.shutdown()


async def test_captured_output_is_never_another_engines(tmp_path):
    a = await WorkflowEngine.create(backend=LocalExecutionBackend(), uid="u", work_dir=tmp_path)
    try:

        @a.executable_task(capture_stdio=True)
        async def say():
            return "echo from-a"

        path = await asyncio.wait_for(say(), T)
        with pytest.raises(ConfigurationError):
            await WorkflowEngine.create(backend=LocalExecutionBackend(), uid="u", work_dir=tmp_path)
        assert Path(path).read_text() == "from-a\n"
    finally:
        await a.shutdown()


# --------------------------------------------------------------------------- pure keys

add_one = lambda x: x + 1  # noqa: E731
add_two = lambda x: x + 2  # noqa: E731


def _redefined(x):
    return x + 1


first_definition = _redefined


def _redefined(x):  # noqa: F811 - a function redefined in the same module
    return x * 10


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        return x * self.factor


def _closure(n):
    def inner(x):
        return x + n

    return inner


def _partial_base(x, y):
    return x + y


@pytest.mark.parametrize(
    ("f", "g"),
    [
        (add_one, add_two),
        (Scaler(2).scale, Scaler(3).scale),
        (first_definition, _redefined),
        (_closure(1), _closure(2)),
        (functools.partial(_partial_base, y=1), functools.partial(_partial_base, y=2)),
    ],
    ids=["lambdas", "bound-methods", "redefined", "closures", "partials"],
)
def test_different_callables_never_share_a_token(f, g):
    assert f(1) != g(1)
    assert tokenize(f, (1,), {}) != tokenize(g, (1,), {})


def test_equal_callables_share_a_token():
    assert tokenize(_closure(1), (1,), {}) == tokenize(_closure(1), (1,), {})
    assert tokenize(Scaler(2).scale, (1,), {}) == tokenize(Scaler(2).scale, (1,), {})
    assert tokenize(_partial_base, (1, 2), {}) == tokenize(_partial_base, (1, 2), {})


def test_a_recursive_closure_tokenizes():
    def outer():
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        return fact

    assert tokenize(outer(), (3,), {}) == tokenize(outer(), (3,), {})


async def test_pure_tasks_of_different_callables_get_their_own_values(tmp_path):
    flow = await _engine(tmp_path, "a")
    try:
        tasks = [
            flow.function_task(f, pure=True)
            for f in (add_one, add_two, Scaler(2).scale, Scaler(3).scale, _closure(5))
        ]
        handles = [t(1) for t in tasks]
        assert len({h.key for h in handles}) == len(handles)
        assert await asyncio.gather(*handles) == [2, 3, 2, 3, 6]
    finally:
        await flow.shutdown()

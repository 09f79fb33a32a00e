"""The backend conformance suite: one mixin of tests that every backend's test
class subclasses.

The idea is dask's ``dask/tests/test_local.py``: the tests are written once,
against the public engine API only (``WorkflowEngine.create``,
``@flow.function_task(backend=...)``, ``executable_task``, ``prompt_task``,
``block``, ``shutdown``), and each backend's test module says how to build the
backend and what it can do::

    from asyncflow_graph.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        runs_in_process = False          # capability flags, see below

        async def make_backends(self, tmp_path):
            return [MyBackend(name=self.backend_name)]

:meth:`~BackendConformance.make_backends` returns a fresh list of backends for
one engine (one test); the first is the backend under test and must be named
``self.backend_name``; others may follow as helpers. A subclass that needs other
fixtures (a cluster, a client) overrides the ``backends`` fixture instead.

Capability flags (class attributes) gate the tests: a test whose requirement a
backend does not have is skipped with the flag's name, never weakened. Task
bodies that cross process boundaries are module-level functions of
:mod:`asyncflow_graph.testing.tasks` (a remote worker needs ``asyncflow_graph``
installed) or closures (shipped by value with cloudpickle); cross-process
synchronisation is through files in ``tmp_path``, polled with a deadline.

Needs ``pytest`` and ``pytest-asyncio``. Every test is marked
``pytest.mark.asyncio`` and the fixtures are ``pytest_asyncio`` fixtures, so the
suite runs in pytest-asyncio's strict mode as well as in ``asyncio_mode=auto``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ..engine import WorkflowEngine
from ..errors import (
    CommandFailedError,
    DependencyFailureError,
    PromptNotSupportedError,
    TaskTimeoutError,
)
from .base import ConformanceBase
from .tasks import ConformanceError, flaky_once, gated, raise_conformance, wait_for_path

__all__ = ["BackendConformance"]


class BackendConformance(ConformanceBase):
    """Mixin of conformance tests. Subclass it in a ``Test...`` class and implement
    :meth:`~ConformanceBase.make_backends`; set the flags to what the backend can do."""

    # -- function tasks ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_single_task_result(self, flow: WorkflowEngine) -> None:
        square = self.task(flow, lambda x: x * x)
        h = square(7)
        assert await self.settle(h) == self.value(49)
        assert h.state == "DONE" and h.done() and not h.cancelled()

    @pytest.mark.asyncio
    async def test_sync_and_async_functions(self, flow: WorkflowEngine) -> None:
        def add(a: int, b: int) -> int:
            return a + b

        async def mul(a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a * b

        s = self.task(flow, add)(2, 3)
        a = self.task(flow, mul)(4, 5)
        both = self.task(flow, add)(s, a)
        assert list(await self.settle(asyncio.gather(s, a, both))) == [
            self.value(5),
            self.value(20),
            self.value(25),
        ]

    @pytest.mark.asyncio
    async def test_closures_share_process_state(self, flow: WorkflowEngine) -> None:
        self.need("runs_in_process")
        seen: list[str] = []

        def sync_append(x: int) -> None:
            seen.append(f"sync{x}")

        async def async_append(x: int) -> None:
            seen.append(f"async{x}")

        await self.settle(
            asyncio.gather(self.task(flow, sync_append)(1), self.task(flow, async_append)(2))
        )
        assert sorted(seen) == ["async2", "sync1"]

    @pytest.mark.asyncio
    async def test_chain_of_50_is_fused(self, flow: WorkflowEngine) -> None:
        inc = self.task(flow, lambda x: x + 1)
        start = self.task(flow, lambda: 0)
        handles = [start()]
        for _ in range(49):
            handles.append(inc(handles[-1]))
        plan = flow.compile(handles[-1])
        units = [u for u in plan.units if u.backend == self.backend_name]
        assert sum(len(u.keys) for u in units) == 50
        caps = flow.backends[self.backend_name].capabilities
        if caps.fuse_chains or caps.graph_units:
            assert len(units) == 1, "a linear chain on one backend is one submission"
        else:
            assert len(units) == 50
        assert await self.settle(handles[-1]) == self.value(49)
        # Intermediate results of a fused chain are still every handle's value.
        assert await self.settle(asyncio.gather(*handles)) == [self.value(i) for i in range(50)]
        assert all(h.state == "DONE" for h in handles)

    @pytest.mark.asyncio
    async def test_fan_out_fan_in_100(self, flow: WorkflowEngine) -> None:
        src = self.task(flow, lambda: 3)()
        mids = [self.task(flow, lambda s, i: s * i)(src, i) for i in range(100)]
        total = self.task(flow, lambda *xs: sum(xs))(*mids)
        assert await self.settle(total) == self.value(3 * sum(range(100)))
        assert await self.settle(asyncio.gather(*mids)) == [self.value(3 * i) for i in range(100)]

    @pytest.mark.asyncio
    async def test_diamond(self, flow: WorkflowEngine) -> None:
        top = self.task(flow, lambda: 10)()
        left = self.task(flow, lambda x: x + 1)(top)
        right = self.task(flow, lambda x: x * 2)(top)
        bottom = self.task(flow, lambda a, b: (a, b))(left, right)
        assert await self.settle(bottom) == self.value((11, 20))
        assert set(bottom.graph) == {top.key, left.key, right.key, bottom.key}

    @pytest.mark.asyncio
    async def test_nested_containers_and_kwargs(self, flow: WorkflowEngine) -> None:
        self.need("runs_functions")
        one = self.task(flow, lambda: 1)()
        two = self.task(flow, lambda: 2)()
        three = self.task(flow, lambda: 3)()

        def combine(xs: list[int], *, mapping: dict[str, Any], pair: tuple[int, ...] = ()) -> Any:
            return [*xs, mapping["k"], mapping["nested"][0]["deep"], *pair]

        h = self.task(flow, combine)(
            [one, two], mapping={"k": three, "nested": [{"deep": one}]}, pair=(two, 5)
        )
        assert await self.settle(h) == [1, 2, 3, 1, 2, 5]
        assert set(h.node.deps) == {one.key, two.key, three.key}

    # -- failures ---------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_failure_propagates_with_root_cause(self, flow: WorkflowEngine) -> None:
        self.need("runs_functions")

        def bad() -> None:
            raise ValueError("boom 42")

        b = self.task(flow, bad)()
        child = self.task(flow, lambda x: x)(b)
        grandchild = self.task(flow, lambda x: x)(child)
        sibling = self.task(flow, lambda: "fine")()
        await self.settle(asyncio.wait([b, child, grandchild, sibling]))
        with pytest.raises(ValueError, match="boom 42") as info:
            await b
        root = info.value
        with pytest.raises(DependencyFailureError) as dinfo:
            await child
        assert dinfo.value.root_cause is root and dinfo.value.__cause__ is root
        assert dinfo.value.failed_dependencies == ["bad"]
        with pytest.raises(DependencyFailureError) as ginfo:
            await grandchild
        assert ginfo.value.root_cause is dinfo.value
        assert b.state == child.state == grandchild.state == "FAILED"
        assert await sibling == "fine"
        await self.still_usable(flow)

    @pytest.mark.asyncio
    async def test_exception_type_survives(self, flow: WorkflowEngine) -> None:
        self.need("runs_functions")
        h = self.task(flow, raise_conformance)(7)
        dep = self.task(flow, lambda x: x)(h)
        with pytest.raises(ConformanceError) as info:
            await self.settle(h)
        assert type(info.value) is ConformanceError
        assert info.value.code == 7 and info.value.message == "typed failure"
        with pytest.raises(DependencyFailureError) as dinfo:
            await self.settle(dep)
        assert dinfo.value.root_cause is info.value

    @pytest.mark.asyncio
    async def test_retry_once_then_succeeds(self, flow: WorkflowEngine, tmp_path: Path) -> None:
        self.need("runs_functions")
        counter = tmp_path / "attempts"
        h = self.task(flow, flaky_once, retries=1)(str(counter))
        after = self.task(flow, lambda x: x + 100)(h)
        assert await self.settle(after) == 102
        assert await h == 2
        assert counter.read_text() == "xx"

    @pytest.mark.asyncio
    async def test_timeout_fails_with_task_timeout_error(
        self, flow: WorkflowEngine, tmp_path: Path
    ) -> None:
        self.need("runs_functions")
        gate = tmp_path / "gate"
        try:
            h = self.task(flow, gated, timeout=0.5)(str(tmp_path / "started"), str(gate))
            dep = self.task(flow, lambda x: x)(h)
            with pytest.raises(TaskTimeoutError) as info:
                await self.settle(h)
            assert isinstance(info.value, TimeoutError)
            assert h.state == "FAILED"
            with pytest.raises(DependencyFailureError) as dinfo:
                await self.settle(dep)
            assert dinfo.value.root_cause is info.value
        finally:
            gate.touch()  # let a worker that cannot be interrupted finish
        await self.still_usable(flow)

    # -- cancellation and shutdown ------------------------------------------------------

    @pytest.mark.asyncio
    async def test_cancel_running_task_and_dependents(
        self, flow: WorkflowEngine, tmp_path: Path
    ) -> None:
        self.need("runs_functions")
        started, gate, marker = tmp_path / "started", tmp_path / "gate", tmp_path / "cancelled"

        async def ident(x: Any) -> Any:
            return x

        try:
            # Async dependents: on the local backend a fused chain with a sync member
            # runs in a thread, where the running head could not be interrupted.
            w = self.task(flow, gated)(str(started), str(gate), str(marker))
            d = self.task(flow, ident)(w)
            dd = self.task(flow, ident)(d)
            await wait_for_path(started, self.T)
            assert w.cancel("stop it") is True
            for h in (w, d, dd):
                with pytest.raises(asyncio.CancelledError):
                    await self.settle(h)
                assert h.cancelled() and h.state == "CANCELLED"
            assert w.cancel() is False
            if self.interrupts_running:
                await wait_for_path(marker, self.T)
        finally:
            gate.touch()
        await self.still_usable(flow)

    @pytest.mark.asyncio
    async def test_cancelled_dependents_never_run(
        self, flow: WorkflowEngine, tmp_path: Path
    ) -> None:
        """The dependents of a cancelled running task never run, even when the backend
        cannot interrupt the running task and they were fused with it."""
        self.need("runs_functions")
        started, gate, ran = tmp_path / "started", tmp_path / "gate", tmp_path / "dependent-ran"
        try:
            w = self.task(flow, gated)(str(started), str(gate))
            d = self.task(flow, lambda x, path: Path(path).touch())(w, str(ran))
            await wait_for_path(started, self.T)
            assert w.cancel() is True
            with pytest.raises(asyncio.CancelledError):
                await self.settle(d)
            # A remote backend's cancel is a message to its scheduler (sent in the
            # background): let it arrive before the running task may finish.
            await flow.settle(timeout=self.T)
        finally:
            gate.touch()
        await self.still_usable(flow)
        # Shutdown drains the backend (a pool finishes what it started), so whatever
        # the running unit was going to do has been done when we look.
        await self.settle(flow.shutdown())
        assert not ran.exists(), "a cancelled dependent ran"

    @pytest.mark.asyncio
    async def test_shutdown_ends_every_future(self, flow: WorkflowEngine, tmp_path: Path) -> None:
        self.need("runs_functions")
        started, gate = tmp_path / "started", tmp_path / "gate"
        try:
            w = self.task(flow, gated)(str(started), str(gate))
            d = self.task(flow, lambda x: x)(w)
            await wait_for_path(started, self.T)
            shutting = asyncio.ensure_future(flow.shutdown())
            _, pending = await asyncio.wait([w, d], timeout=self.T)
            assert not pending, "shutdown left futures open"
            assert w.cancelled() and d.cancelled()
            assert w.state == d.state == "CANCELLED"
        finally:
            gate.touch()
        await self.settle(shutting)
        await self.settle(flow.shutdown())  # twice is fine

    # -- blocks -----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_block_members_run_on_backend(self, flow: WorkflowEngine) -> None:
        inc = self.task(flow, lambda x: x + 1)
        members: list[Any] = []

        @flow.block
        async def blk(x: Any) -> list[Any]:
            a = inc(x)
            b = inc(a)
            members.extend([a, b])
            return [await a, await b]

        src = inc(0)
        b = blk(src)
        after = self.task(flow, lambda xs: xs)(b)
        assert await self.settle(after) == self.value([2, 3])
        assert await b == [self.value(2), self.value(3)]
        assert all(m.node.parent == b.key for m in members)
        assert b.state == "DONE"

    # -- executables ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_executable_stdout(self, flow: WorkflowEngine) -> None:
        self.need("runs_commands")

        def hello(word: str) -> list[str]:
            return ["echo", "hello", word]

        word = self.task(flow, lambda: "world")()
        h = flow.executable_task(hello, backend=self.backend_name)(word)
        assert await self.settle(h) == "hello world\n"

    @pytest.mark.asyncio
    async def test_executable_failure(self, flow: WorkflowEngine) -> None:
        self.need("runs_commands")

        def fails() -> list[str]:
            return ["sh", "-c", "echo some-error >&2; exit 3"]

        h = flow.executable_task(fails, backend=self.backend_name)()
        dep = self.task(flow, lambda x: x)(h)
        with pytest.raises(self.command_error) as info:
            await self.settle(h)
        assert "some-error" in str(info.value)
        if isinstance(info.value, CommandFailedError):
            assert info.value.exit_code == 3
        with pytest.raises(DependencyFailureError):
            await self.settle(dep)

    @pytest.mark.asyncio
    async def test_capture_stdio_writes_files(self, flow: WorkflowEngine, tmp_path: Path) -> None:
        self.need("runs_commands", "captures_stdio")

        def cap() -> list[str]:
            return ["sh", "-c", "echo captured; echo noise >&2"]

        h = flow.executable_task(cap, backend=self.backend_name, capture_stdio=True)()
        path = Path(await self.settle(h))
        assert path == tmp_path / flow.uid / f"{h.key}.stdout"
        assert path.read_text() == "captured\n"
        assert path.with_suffix(".stderr").read_text() == "noise\n"

    # -- prompts ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_prompt_answered(self, flow: WorkflowEngine) -> None:
        self.need("runs_prompts")

        def ask(topic: str) -> str:
            return f"say something about {topic}"

        answer = await self.settle(flow.prompt_task(ask, backend=self.backend_name)("graphs"))
        assert isinstance(answer, str) and answer.strip()

    @pytest.mark.asyncio
    async def test_prompt_refused_with_clear_error(self, flow: WorkflowEngine) -> None:
        self.need("refuses_prompts")
        built: list[str] = []

        def ask(topic: str) -> str:
            built.append(topic)
            return f"say something about {topic}"

        h = flow.prompt_task(ask, backend=self.backend_name)("graphs")
        dep = self.task(flow, lambda x: x)(h)
        with pytest.raises(PromptNotSupportedError) as info:
            await self.settle(h)
        assert isinstance(info.value, NotImplementedError)
        message = str(info.value)
        assert repr(self.backend_name) in message and "prompt" in message
        assert h.state == "FAILED" and built == []
        with pytest.raises(DependencyFailureError):
            await self.settle(dep)
        await self.still_usable(flow)

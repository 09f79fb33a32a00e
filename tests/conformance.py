"""Backend conformance suite: one mixin of tests that every backend's test class subclasses.

The idea is dask's ``dask/tests/test_local.py``: the tests are written once, against the
public engine API only (``WorkflowEngine.create``, ``@flow.function_task(backend=...)``,
``executable_task``, ``prompt_task``, ``block``, ``shutdown``), and each backend's test
module says how to build the backend and what it can do::

    class TestMyBackend(BackendConformance):
        runs_in_process = False          # capability flags, see below

        async def make_backends(self, tmp_path):
            return [MyBackend(name=self.backend_name)]

``make_backends`` returns a fresh list of backends for one engine (one test); the first is
the backend under test and must be named ``self.backend_name``; others may follow as
helpers. A subclass that needs other fixtures (a cluster, a client) either stores them on
``self`` from an autouse fixture or overrides the ``backends`` fixture.

Capability flags (class attributes) gate the tests: a test whose requirement a backend does
not have is skipped with the flag's name, never weakened. Task bodies used across process
boundaries are module-level functions here (``tests/`` must be importable by remote workers:
put it on their ``PYTHONPATH``) or closures (shipped by value with cloudpickle); cross-process
synchronisation is through files in ``tmp_path``, polled with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.errors import (
    CommandFailedError,
    DependencyFailureError,
    PromptNotSupportedError,
    TaskTimeoutError,
)

__all__ = [
    "DUMMY_OUTPUT",
    "BackendConformance",
    "ConformanceError",
    "flaky_once",
    "gated",
    "wait_for_path",
]

#: what a dry-run backend (NoopExecutionBackend) answers for every non-prompt task
DUMMY_OUTPUT = "Dummy Output"

V = TypeVar("V")


class ConformanceError(Exception):
    """A user exception with an extra attribute: its type and fields must survive the
    trip through any backend (threads, processes, remote workers)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


# --------------------------------------------------------------------------- task bodies
# Module-level so that they ship by reference to forked pools and to remote workers that
# have tests/ on their path.


async def gated(started: str, gate: str, cancelled_marker: str = "", limit: float = 30.0) -> str:
    """Announce the start (a file holding this process's pid), then wait until ``gate``
    exists. Async so it also runs on backends that call functions on the event loop;
    ``limit`` bounds how long a worker that nobody releases stays busy."""
    announce_pid(started)
    deadline = time.monotonic() + limit
    try:
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} was never opened")
            await asyncio.sleep(0.005)
    except asyncio.CancelledError:
        if cancelled_marker:
            Path(cancelled_marker).touch()
        raise
    return "released"


def flaky_once(counter: str) -> int:
    """Fail on the first attempt, succeed on the next ones; the attempt count lives in a
    file, so it works whatever process or machine runs each attempt."""
    with open(counter, "a") as f:
        f.write("x")
    attempts = os.path.getsize(counter)
    if attempts == 1:
        raise ConformanceError("first attempt fails", 1)
    return attempts


def raise_conformance(code: int) -> None:
    raise ConformanceError("typed failure", code)


def announce_pid(path: str) -> None:
    """Write this process's pid to ``path`` atomically: a reader polling for the file
    (often in another process) never sees it created but still empty."""
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(str(os.getpid()))
    os.replace(tmp, path)


async def wait_for_path(path: Path, timeout: float) -> None:
    """Poll for ``path`` with a deadline (the writer may be another process)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- the mixin


class BackendConformance:
    """Mixin of conformance tests. Subclass it in a ``Test...`` class and implement
    :meth:`make_backends`; set the flags to what the backend can do."""

    #: name of the backend under test (tasks are routed to it explicitly)
    backend_name: ClassVar[str] = "under_test"
    #: runs the code of function tasks (False: a dry run that answers DUMMY_OUTPUT)
    runs_functions: ClassVar[bool] = True
    #: runs executable tasks (commands)
    runs_commands: ClassVar[bool] = True
    #: answers prompt tasks with a non-empty str
    runs_prompts: ClassVar[bool] = False
    #: prompt tasks routed to it fail with PromptNotSupportedError (before running)
    refuses_prompts: ClassVar[bool] = True
    #: task code shares this process's memory: closures mutating test state are seen
    runs_in_process: ClassVar[bool] = False
    #: cancelling a running task interrupts its code (not only ends its future)
    interrupts_running: ClassVar[bool] = False
    #: capture_stdio=True writes {work_dir}/{engine uid}/{key}.stdout and returns its path
    captures_stdio: ClassVar[bool] = True
    #: the exception type of a failed command (the AsyncFlow adapter reports BackendError)
    command_error: ClassVar[type[BaseException]] = CommandFailedError
    #: generous bound for every wait in a test (never a synchronization sleep)
    T: ClassVar[float] = 20.0

    async def make_backends(self, tmp_path: Path) -> list[Any]:
        """A fresh list of backends for one engine; the first one is under test."""
        raise NotImplementedError

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    async def backends(self, tmp_path: Path) -> list[Any]:
        return await self.make_backends(tmp_path)

    @pytest.fixture
    async def flow(self, backends: list[Any], tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
        # Awaited directly, not through asyncio.wait_for: the engine must be created in
        # the test's own context (see test_engine_created_in_another_task_is_usable).
        engine = await WorkflowEngine.create(backend=backends, work_dir=tmp_path)
        assert self.backend_name in engine.backends, (
            f"make_backends must name the backend under test {self.backend_name!r}"
        )
        try:
            yield engine
        finally:
            await asyncio.wait_for(engine.shutdown(), self.T)

    # -- helpers ----------------------------------------------------------------------

    def need(self, *flags: str) -> None:
        for flag in flags:
            if not getattr(self, flag):
                pytest.skip(f"{type(self).__name__}: {flag} is False")

    def value(self, expected: V) -> V | str:
        """What the backend answers for a task whose real result is ``expected``."""
        return expected if self.runs_functions else DUMMY_OUTPUT

    async def settle(self, aw: Awaitable[V]) -> V:
        return await asyncio.wait_for(aw, self.T)

    def task(self, flow: WorkflowEngine, func: Any, **options: Any) -> Any:
        return flow.function_task(func, backend=self.backend_name, **options)

    async def still_usable(self, flow: WorkflowEngine) -> None:
        double = self.task(flow, lambda x: x * 2)
        assert await self.settle(double(21)) == self.value(42)

    # -- function tasks ---------------------------------------------------------------

    async def test_single_task_result(self, flow):
        square = self.task(flow, lambda x: x * x)
        h = square(7)
        assert await self.settle(h) == self.value(49)
        assert h.state == "DONE" and h.done() and not h.cancelled()

    async def test_sync_and_async_functions(self, flow):
        def add(a, b):
            return a + b

        async def mul(a, b):
            await asyncio.sleep(0)
            return a * b

        s = self.task(flow, add)(2, 3)
        a = self.task(flow, mul)(4, 5)
        both = self.task(flow, add)(s, a)
        assert await self.settle(asyncio.gather(s, a, both)) == [
            self.value(5),
            self.value(20),
            self.value(25),
        ]

    async def test_closures_share_process_state(self, flow):
        self.need("runs_in_process")
        seen: list[str] = []

        def sync_append(x):
            seen.append(f"sync{x}")

        async def async_append(x):
            seen.append(f"async{x}")

        await self.settle(
            asyncio.gather(self.task(flow, sync_append)(1), self.task(flow, async_append)(2))
        )
        assert sorted(seen) == ["async2", "sync1"]

    async def test_chain_of_50_is_fused(self, flow):
        inc = self.task(flow, lambda x: x + 1)
        start = self.task(flow, lambda: 0)
        handles = [start()]
        for _ in range(49):
            handles.append(inc(handles[-1]))
        plan = flow.compile(handles[-1])
        units = [u for u in plan.units if u.backend == self.backend_name]
        assert sum(len(u.keys) for u in units) == 50
        caps = flow.backends[self.backend_name].capabilities
        if caps.fuse_chains or getattr(caps, "graph_units", False):
            assert len(units) == 1, "a linear chain on one backend is one submission"
        else:
            assert len(units) == 50
        assert await self.settle(handles[-1]) == self.value(49)
        # Intermediate results of a fused chain are still every handle's value.
        assert await self.settle(asyncio.gather(*handles)) == [self.value(i) for i in range(50)]
        assert all(h.state == "DONE" for h in handles)

    async def test_fan_out_fan_in_100(self, flow):
        src = self.task(flow, lambda: 3)()
        mids = [self.task(flow, lambda s, i: s * i)(src, i) for i in range(100)]
        total = self.task(flow, lambda *xs: sum(xs))(*mids)
        assert await self.settle(total) == self.value(3 * sum(range(100)))
        assert await self.settle(asyncio.gather(*mids)) == [self.value(3 * i) for i in range(100)]

    async def test_diamond(self, flow):
        top = self.task(flow, lambda: 10)()
        left = self.task(flow, lambda x: x + 1)(top)
        right = self.task(flow, lambda x: x * 2)(top)
        bottom = self.task(flow, lambda a, b: (a, b))(left, right)
        assert await self.settle(bottom) == self.value((11, 20))
        assert set(bottom.graph) == {top.key, left.key, right.key, bottom.key}

    async def test_nested_containers_and_kwargs(self, flow):
        self.need("runs_functions")
        one = self.task(flow, lambda: 1)()
        two = self.task(flow, lambda: 2)()
        three = self.task(flow, lambda: 3)()

        def combine(xs, *, mapping, pair=()):
            return [*xs, mapping["k"], mapping["nested"][0]["deep"], *pair]

        h = self.task(flow, combine)(
            [one, two], mapping={"k": three, "nested": [{"deep": one}]}, pair=(two, 5)
        )
        assert await self.settle(h) == [1, 2, 3, 1, 2, 5]
        assert set(h.node.deps) == {one.key, two.key, three.key}

    # -- failures ---------------------------------------------------------------------

    async def test_failure_propagates_with_root_cause(self, flow):
        self.need("runs_functions")

        def bad():
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

    async def test_exception_type_survives(self, flow):
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

    async def test_retry_once_then_succeeds(self, flow, tmp_path):
        self.need("runs_functions")
        counter = tmp_path / "attempts"
        h = self.task(flow, flaky_once, retries=1)(str(counter))
        after = self.task(flow, lambda x: x + 100)(h)
        assert await self.settle(after) == 102
        assert await h == 2
        assert counter.read_text() == "xx"

    async def test_timeout_fails_with_task_timeout_error(self, flow, tmp_path):
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

    async def test_cancel_running_task_and_dependents(self, flow, tmp_path):
        self.need("runs_functions")
        started, gate, marker = tmp_path / "started", tmp_path / "gate", tmp_path / "cancelled"

        async def ident(x):
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

    async def test_cancelled_dependents_never_run(self, flow, tmp_path):
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

    async def test_shutdown_ends_every_future(self, flow, tmp_path):
        self.need("runs_functions")
        started, gate = tmp_path / "started", tmp_path / "gate"
        try:
            w = self.task(flow, gated)(str(started), str(gate))
            d = self.task(flow, lambda x: x)(w)
            await wait_for_path(started, self.T)
            shutting = asyncio.ensure_future(flow.shutdown())
            done, pending = await asyncio.wait([w, d], timeout=self.T)
            assert not pending, "shutdown left futures open"
            assert w.cancelled() and d.cancelled()
            assert w.state == d.state == "CANCELLED"
        finally:
            gate.touch()
        await self.settle(shutting)
        await self.settle(flow.shutdown())  # twice is fine

    # -- blocks -----------------------------------------------------------------------

    async def test_block_members_run_on_backend(self, flow):
        inc = self.task(flow, lambda x: x + 1)
        members: list[Any] = []

        @flow.block
        async def blk(x):
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

    async def test_executable_stdout(self, flow):
        self.need("runs_commands")

        @flow.executable_task(backend=self.backend_name)
        def hello(word):
            return ["echo", "hello", word]

        word = self.task(flow, lambda: "world")()
        assert await self.settle(hello(word)) == "hello world\n"

    async def test_executable_failure(self, flow):
        self.need("runs_commands")

        @flow.executable_task(backend=self.backend_name)
        def fails():
            return ["sh", "-c", "echo some-error >&2; exit 3"]

        h = fails()
        dep = self.task(flow, lambda x: x)(h)
        with pytest.raises(self.command_error) as info:
            await self.settle(h)
        assert "some-error" in str(info.value)
        if isinstance(info.value, CommandFailedError):
            assert info.value.exit_code == 3
        with pytest.raises(DependencyFailureError):
            await self.settle(dep)

    async def test_capture_stdio_writes_files(self, flow, tmp_path):
        self.need("runs_commands", "captures_stdio")

        @flow.executable_task(backend=self.backend_name, capture_stdio=True)
        def cap():
            return ["sh", "-c", "echo captured; echo noise >&2"]

        h = cap()
        path = Path(await self.settle(h))
        assert path == tmp_path / flow.uid / f"{h.key}.stdout"
        assert path.read_text() == "captured\n"
        assert path.with_suffix(".stderr").read_text() == "noise\n"

    # -- prompts ----------------------------------------------------------------------

    async def test_prompt_answered(self, flow):
        self.need("runs_prompts")

        @flow.prompt_task(backend=self.backend_name)
        def ask(topic):
            return f"say something about {topic}"

        answer = await self.settle(ask("graphs"))
        assert isinstance(answer, str) and answer.strip()

    async def test_prompt_refused_with_clear_error(self, flow):
        self.need("refuses_prompts")
        built: list[str] = []

        @flow.prompt_task(backend=self.backend_name)
        def ask(topic):
            built.append(topic)
            return f"say something about {topic}"

        h = ask("graphs")
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

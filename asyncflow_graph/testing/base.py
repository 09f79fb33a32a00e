"""What every backend's conformance test class sets and gets: the capability
flags, the ``backends`` and ``flow`` fixtures and the helpers the tests use.
:class:`~asyncflow_graph.testing.BackendConformance` adds the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import pytest_asyncio

from ..engine import WorkflowEngine
from ..errors import CommandFailedError
from .tasks import DUMMY_OUTPUT

__all__ = ["ConformanceBase"]

V = TypeVar("V")


class ConformanceBase:
    """Flags, fixtures and helpers of the conformance suite. Subclass
    :class:`~asyncflow_graph.testing.BackendConformance`, not this."""

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
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_backends(tmp_path) or override "
            f"the backends fixture"
        )

    # -- fixtures ---------------------------------------------------------------------

    @pytest_asyncio.fixture
    async def backends(self, tmp_path: Path) -> list[Any]:
        return await self.make_backends(tmp_path)

    @pytest_asyncio.fixture
    async def flow(self, backends: list[Any], tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
        # Awaited directly, not through asyncio.wait_for: the engine must be created
        # in the test's own context (its scope ContextVar is set there).
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
        """Skip this test unless every capability flag in ``flags`` is true."""
        for flag in flags:
            if not getattr(self, flag):
                pytest.skip(f"{type(self).__name__}: {flag} is False")

    def value(self, expected: V) -> V | str:
        """What the backend answers for a task whose real result is ``expected``."""
        return expected if self.runs_functions else DUMMY_OUTPUT

    async def settle(self, aw: Awaitable[V]) -> V:
        """``await aw``, bounded by :attr:`T`."""
        return await asyncio.wait_for(aw, self.T)

    def task(self, flow: WorkflowEngine, func: Any, **options: Any) -> Any:
        """``func`` as a function task routed to the backend under test."""
        return flow.function_task(func, backend=self.backend_name, **options)

    async def still_usable(self, flow: WorkflowEngine) -> None:
        """The backend still runs tasks (after a failure, cancel or timeout)."""
        double = self.task(flow, lambda x: x * 2)
        assert await self.settle(double(21)) == self.value(42)

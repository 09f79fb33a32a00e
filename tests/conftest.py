"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

# Imported up front: CPython 3.11.7 can corrupt its AST recursion counter while
# logging a never-retrieved future exception in a finalizer, which then breaks a
# *later* first import under pytest's assertion rewriting (hypothesis' summary hook).
import hypothesis  # noqa: F401
import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own temporary directory: an engine created without
    ``work_dir`` makes its session directory in the current one (as AsyncFlow does),
    and a test run should not leave those in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def flow(tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    """An engine with one ``LocalExecutionBackend`` (test modules that need other
    backends define their own ``flow``)."""
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    yield engine
    await engine.shutdown()

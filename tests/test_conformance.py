"""The backend conformance suite (asyncflow_graph.testing) run against the built-in local
backends and the AsyncFlow adapter. The Dask backend's runs are in test_dask_backend.py."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
from asyncflow_style_backend import AsyncFlowStyleBackend
from procs import run_python

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import NoopExecutionBackend
from asyncflow_graph.errors import BackendError
from asyncflow_graph.testing import BackendConformance

pytestmark = pytest.mark.timeout(30)


class TestLocalThreads(BackendConformance):
    runs_in_process = True
    interrupts_running = True  # async tasks run on the loop and are cancelled there

    async def make_backends(self, tmp_path):
        return [LocalExecutionBackend(name=self.backend_name)]

    async def test_cancelled_dependents_never_run(self, flow, tmp_path):
        await super().test_cancelled_dependents_never_run(flow, tmp_path)


class TestLocalProcesses(BackendConformance):
    runs_in_process = False
    interrupts_running = False  # a pool process finishes what it started

    async def make_backends(self, tmp_path):
        return [LocalExecutionBackend(ProcessPoolExecutor(2), name=self.backend_name)]

    async def test_cancelled_dependents_never_run(self, flow, tmp_path):
        await super().test_cancelled_dependents_never_run(flow, tmp_path)


class TestAsyncFlowAdapter(BackendConformance):
    """An AsyncFlow/RHAPSODY-style object behind AsyncFlowBackendAdapter."""

    runs_prompts = True  # the test backend answers prompts through its responder
    refuses_prompts = False
    runs_in_process = True
    interrupts_running = True  # cancel_task cancels the asyncio task
    captures_stdio = False  # capture_stdio is the third-party backend's business
    command_error = BackendError  # AsyncFlow reports a failed command by its stderr

    async def make_backends(self, tmp_path):
        return [AsyncFlowStyleBackend(self.backend_name, responder=lambda p: f"echo: {p}")]


class TestNoop(BackendConformance):
    """A dry run: every task ends DONE with a dummy value, nothing runs."""

    runs_functions = False
    runs_commands = False
    runs_prompts = True  # answers "Dummy Prompt Output"
    refuses_prompts = False

    async def make_backends(self, tmp_path):
        return [NoopExecutionBackend(name=self.backend_name)]


async def test_engine_created_in_another_task_is_usable(tmp_path):
    flow = await asyncio.wait_for(
        WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path), 10
    )
    try:

        @flow.function_task
        async def one():
            return 1

        assert await asyncio.wait_for(one(), 10) == 1
    finally:
        await asyncio.wait_for(flow.shutdown(), 10)


async def test_async_head_of_fused_chain_runs_on_the_loop(tmp_path):
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    try:

        @flow.function_task
        async def where():
            return threading.current_thread()

        @flow.function_task
        def keep(x):
            return x

        h = where()
        keep(h)
        assert await asyncio.wait_for(h, 10) is threading.main_thread()
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- the public suite

THIRD_PARTY_TESTS = """
from asyncflow_graph import LocalExecutionBackend
from asyncflow_graph.testing import BackendConformance


class TestTheirBackend(BackendConformance):
    runs_in_process = True

    async def make_backends(self, tmp_path):
        return [LocalExecutionBackend(name=self.backend_name)]


class TestWrongFlag(BackendConformance):
    runs_functions = False  # wrong: the backend does run them

    async def make_backends(self, tmp_path):
        return [LocalExecutionBackend(name=self.backend_name)]
"""


def test_importing_the_package_or_its_task_bodies_imports_no_pytest(tmp_path):
    code = (
        "import sys, asyncflow_graph, asyncflow_graph.testing, asyncflow_graph.testing.tasks; "
        "bad = [m for m in ('pytest', 'pytest_asyncio', '_pytest') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_suite_runs_in_a_third_party_project_in_strict_mode(tmp_path, monkeypatch):
    """Outside this repository's configuration (pytest-asyncio's default strict mode,
    no conftest, no plugin but pytest-asyncio): the tests run, and a failing one shows
    the compared values."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_theirs.py").write_text(THIRD_PARTY_TESTS)
    selected = "test_single_task_result or test_retry_once_then_succeeds"
    args = ["-m", "pytest", "-q", "-p", "asyncio", "-p", "no:cacheprovider", "-k", selected]
    proc = run_python(args, tmp_path, timeout=60)
    out = proc.stdout
    assert "1 failed, 2 passed, 1 skipped" in out, out + proc.stderr
    assert "TestWrongFlag::test_single_task_result" in out
    assert "assert 49 == 'Dummy Output'" in out  # asserts are rewritten in the suite

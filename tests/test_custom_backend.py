"""The example third-party backend (examples/custom_backend.py) passes the public
conformance suite, plus tests of what only it promises.

This is what a backend author's test module looks like (docs/backends.md shows it);
only the ``sys.path`` line is particular to this repository, where ``examples/`` is
not an installed package.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.testing import BackendConformance

sys.path.append(str(Path(__file__).resolve().parents[1] / "examples"))
from custom_backend import ThreadPoolBackend  # noqa: E402


class TestThreadPoolBackend(BackendConformance):
    runs_in_process = True  # threads of this process: closures see the test's state
    interrupts_running = False  # a Python call running in a thread cannot be stopped

    async def make_backends(self, tmp_path: Path) -> list[ThreadPoolBackend]:
        return [ThreadPoolBackend(name=self.backend_name, max_workers=2)]

    # -- what this backend adds: the same fixtures and helpers, its own promises ----------

    async def test_at_most_max_workers_run_at_once(self, flow: WorkflowEngine) -> None:
        started, gate, lock = threading.Semaphore(0), threading.Event(), threading.Lock()
        active = peak = 0

        def job(i: int) -> str:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            started.release()
            gate.wait(self.T)
            with lock:
                active -= 1
            return threading.current_thread().name

        handles = [self.task(flow, job)(i) for i in range(6)]
        await asyncio.to_thread(lambda: [started.acquire(timeout=self.T) for _ in range(2)])
        # The running reports came from the worker threads before they started.
        assert [h.state for h in handles].count("RUNNING") == 2
        gate.set()
        names = await self.settle(asyncio.gather(*handles))
        assert peak == 2 and all(name.startswith(self.backend_name) for name in names)

    async def test_cancel_stops_a_running_chain_before_its_next_call(
        self, flow: WorkflowEngine
    ) -> None:
        started, gate, ran = threading.Event(), threading.Event(), []

        def head() -> int:
            started.set()
            gate.wait(self.T)
            return 1

        def tail(x: int) -> int:
            ran.append(x)
            return x

        h = self.task(flow, head)()
        t = self.task(flow, tail)(h)
        assert len(flow.compile(t).units) == 1  # one fused chain, one thread
        await asyncio.to_thread(started.wait, self.T)
        assert h.cancel() is True
        await flow.settle(timeout=self.T)
        gate.set()
        await self.settle(flow.shutdown())  # the pool finished what it started
        assert t.cancelled() and ran == []

    async def test_cancel_drops_queued_work(self, flow: WorkflowEngine) -> None:
        started, gate, ran = threading.Semaphore(0), threading.Event(), []

        def hold() -> None:
            started.release()
            gate.wait(self.T)

        busy = [self.task(flow, hold)() for _ in range(2)]  # both workers
        queued = self.task(flow, ran.append)("queued")  # submitted, waits for a worker
        await asyncio.to_thread(lambda: [started.acquire(timeout=self.T) for _ in range(2)])
        assert queued.state == "PENDING"
        assert queued.cancel() is True
        await flow.settle(timeout=self.T)  # the backend's cancel has returned
        gate.set()
        await self.settle(asyncio.gather(*busy))
        await self.still_usable(flow)
        assert queued.cancelled() and ran == []


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_workers must be an int >= 1, got 0"):
        ThreadPoolBackend(max_workers=0)

"""A complete third-party backend: function tasks in a bounded thread pool.

``ThreadPoolBackend`` is written only against the public backend API
(``asyncflow_graph.protocol`` and ``asyncflow_graph.backends.helpers``) and passes
the conformance suite (``tests/test_custom_backend.py``):

* function tasks run in at most ``max_workers`` threads; each worker thread reports
  through a ``ThreadSafeReporter``, which hands every report to the event loop;
* a fused chain runs in one thread, call after call, and its outcomes are reported
  in one ``ended`` batch (one dispatch of the work they make ready);
* executable tasks run as child processes of the loop (``run_command``), so a
  cancel or a timeout kills them;
* ``cancel`` drops work that has not started and stops a running chain before its
  next call (a running Python call cannot be interrupted: its result is dropped).

Run it: ``python examples/custom_backend.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends.helpers import calls_of, run_chain, run_command
from asyncflow_graph.protocol import (
    Backend,
    BackendContext,
    Capabilities,
    Command,
    Outcome,
    ThreadSafeReporter,
    Work,
)


class InPool(NamedTuple):
    """A unit handed to the pool."""

    future: Future[None]
    stop: threading.Event  # set by cancel(): the chain starts no further call


class ThreadPoolBackend(Backend):
    """Function tasks in a pool of ``max_workers`` threads; commands as children."""

    def __init__(self, name: str = "threads", max_workers: int = 4) -> None:
        super().__init__(name)
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.capabilities = Capabilities(max_concurrency=max_workers)
        self._pool: ThreadPoolExecutor | None = None
        self._threads: ThreadSafeReporter | None = None
        #: head key of each unit this backend runs -> its command task or pool entry
        self._running: dict[str, asyncio.Task[None] | InPool] = {}

    async def start(self, context: BackendContext) -> None:
        await super().start(context)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
        # context.reporter may only be called on the loop thread; this one may be
        # called from the worker threads.
        self._threads = ThreadSafeReporter(context.reporter, context.loop)

    def submit(self, works: Sequence[Work]) -> None:
        # Never blocks and never reports an outcome from inside submit: the work
        # runs in a Task or a thread and reports when it ends.
        for work in works:
            if isinstance(work.payload, Command):
                task = self.context.loop.create_task(self._run_command(work, work.payload))
                self._running[work.key] = task
                task.add_done_callback(partial(self._forget, work.key))
            else:
                self._run_in_pool(work)

    def _run_in_pool(self, work: Work) -> None:
        assert self._pool is not None, "submit before start"
        stop = threading.Event()
        entry = InPool(self._pool.submit(self._run_chain, work, stop), stop)
        self._running[work.key] = entry
        entry.future.add_done_callback(partial(self._left_pool, work.key, entry))

    def _run_chain(self, work: Work, stop: threading.Event) -> None:
        """In a worker thread: the unit's calls one by one (``run_chain`` on one
        call at a time, so that a cancel stops the chain between calls)."""
        assert self._threads is not None
        values: Mapping[str, Any] = work.inputs
        outcomes: list[Outcome] = []
        for call in calls_of(work):
            if stop.is_set():
                break  # cancelled: the engine has already ended the rest
            self._threads.running(call.key)
            ((key, ok, value),) = run_chain([call], values)
            outcomes.append((key, ok, value))
            if not ok:
                break  # the engine fails the rest of the chain as dependents
            values = {key: value}
        self._threads.ended(outcomes)

    async def _run_command(self, work: Work, command: Command) -> None:
        report = self.context.reporter  # a Task on the loop: report directly
        report.running(work.key)
        try:
            result = await run_command(command)
        except asyncio.CancelledError:
            report.cancelled(work.key)
            raise
        except Exception as exc:
            report.failed(work.key, exc)
        else:
            report.done(work.key, result)

    def _left_pool(self, key: str, entry: InPool, _: Future[None]) -> None:
        # A pool future's done callback runs in the worker thread: hop to the loop.
        self.context.loop.call_soon_threadsafe(self._forget, key, entry)

    def _forget(self, key: str, entry: object) -> None:
        # Only this entry: a retry of the same key may have been submitted already.
        if self._running.get(key) is entry:
            del self._running[key]

    async def cancel(self, work: Work) -> None:
        entry = self._running.pop(work.key, None)
        if isinstance(entry, asyncio.Task):
            entry.cancel()  # run_command kills the child process
        elif entry is not None:
            entry.stop.set()
            if entry.future.cancel():  # still queued: it never starts
                self.context.reporter.cancelled(work.key)

    async def close(self) -> None:
        commands = [e for e in self._running.values() if isinstance(e, asyncio.Task)]
        for task in commands:
            task.cancel()
        if commands:
            await asyncio.wait(commands)
        if self._pool is not None:
            # Running threads finish their call; wait for them off the loop.
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- demo


async def main() -> None:
    flow = await WorkflowEngine.create(backend=ThreadPoolBackend(max_workers=2))

    @flow.function_task
    def square(x: int) -> int:
        return x * x

    @flow.function_task
    def total(*xs: int) -> int:
        return sum(xs)

    @flow.function_task
    def where() -> str:
        return threading.current_thread().name

    @flow.executable_task
    def show(n: int) -> list[str]:
        return ["echo", f"sum of squares: {n}"]

    @flow.function_task
    def divide(a: float, b: float) -> float:
        return a / b

    result = total(*[square(i) for i in range(10)])
    print("result:", await result)
    print("command:", (await show(result)).strip())
    print("ran in:", await where())
    try:
        await divide(1, 0)
    except ZeroDivisionError as exc:
        print("failed:", type(exc).__name__, exc)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

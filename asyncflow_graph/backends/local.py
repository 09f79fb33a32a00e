"""``LocalExecutionBackend``: thread or process pools on this machine.

* Coroutine functions run on the engine's own event loop (no thread hop) unless
  ``inline_async=False`` or the pool is a process pool: an async task is
  cooperative by contract, and skipping the hop is the largest single saving per
  task. Plain functions run in the pool.
* Executables run as child processes of the loop (asyncio subprocess), so a
  cancel or timeout really kills them; nothing blocks the loop.
* A process pool gets the unit's calls with cloudpickle, so lambdas and closures
  work; results that cannot come back become a clear error for that task.
* AsyncFlow's backends API (``register_callback``, ``submit_tasks``, ``cancel_task``,
  ``cancel_all_tasks``, ``shutdown``) runs task dicts for code that drives the
  backend directly (``local_tasks.py``); the engine uses it for a subclass that
  overrides one of those methods.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import types
from collections.abc import Coroutine, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from ..coro import resume
from ..protocol import Backend, BackendContext, Capabilities, Command, Outcome, Work
from ..spec import call
from .asyncflow_api import AsyncFlowBackendAPI, mark_attached
from .helpers import run_command
from .local_tasks import TaskDictRunner
from .pools import make_pool
from .stops import Stops

__all__ = ["LocalExecutionBackend"]


class LocalExecutionBackend(AsyncFlowBackendAPI, Backend):
    def __init__(
        self,
        executor: Executor | None = None,
        name: str = "default",
        *,
        inline_async: bool = True,
    ) -> None:
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor (ThreadPoolExecutor or "
                f"ProcessPoolExecutor), got {type(executor).__name__}"
            )
        super().__init__(name)
        self._owns_executor = executor is None
        self._pool = make_pool(
            executor or ThreadPoolExecutor(thread_name_prefix=f"asyncflow-{name}"), name
        )
        self._processes = isinstance(self._pool.executor, ProcessPoolExecutor)
        self._inline = inline_async and not self._processes
        self.capabilities = Capabilities(
            needs_pickle=self._processes, backend_type=type(self).__name__
        )
        self._tasks: dict[str, asyncio.Future[Any]] = {}
        #: code object -> whether its functions are coroutine functions. Keyed by
        #: code, not function: closures made per task share one entry (a cache by
        #: function would keep every one alive), and unhashable callables work.
        self._is_async: dict[types.CodeType, bool] = {}
        #: the function _all_async asked about last (one reference, dropped for the next)
        self._last_func: Any = None
        self._last_async = False
        self._stops = Stops()  # keys cancelled while their unit runs or waits in the pool
        self._closed = False
        self._init_asyncflow_api()
        self._dicts = TaskDictRunner(self)

    async def start(self, context: BackendContext) -> None:
        await super().start(context)
        mark_attached(self, context)

    @classmethod
    async def create(cls, executor: Executor | None = None, name: str = "default") -> Any:
        return cls(executor, name)

    @property
    def executor(self) -> Executor:
        return self._pool.executor  # a process pool is replaced after a worker died

    @property
    def runs_inline(self) -> bool:
        """Coroutine functions run on the event loop, not in the pool."""
        return self._inline

    @property
    def uses_processes(self) -> bool:
        return self._processes

    def state(self) -> str:
        return "SHUTDOWN" if self._closed else ("IDLE" if self._context else "INITIALIZED")

    # -- submission ---------------------------------------------------------------------

    def submit(self, works: Sequence[Work]) -> None:
        loop = self.context.loop
        tasks = self._tasks
        finished: list[Outcome] = []  # eager results, reported once submit returned
        for w in works:
            if w.payload is not None:
                coro = self._run_command(w)
            elif self._inline and self._all_async(w):
                if not finished:
                    # Scheduled before any Task below, so results keep their order.
                    loop.call_soon(self._report, finished)
                self._start_inline(w, finished)
                continue
            else:
                coro = self._run_pooled(w)
            tasks[w.key] = loop.create_task(coro)

    def _start_inline(self, work: Work, finished: list[Outcome]) -> None:
        """Run an async unit's first steps right here (an eager task, as asyncio's
        eager_task_factory does in 3.12): a coroutine that never suspends costs no
        Task and no loop turn. Only a coroutine that does suspend gets a Task, which
        continues it from where it stopped."""
        report = self.context.reporter
        values = work.inputs
        for i, node in enumerate(work.nodes):
            report.running(node.key)  # only records the start: safe inside submit
            context = contextvars.copy_context()
            try:
                coro = call(node, values)
                yielded = context.run(coro.send, None)
            except StopIteration as stop:
                finished.append((node.key, True, stop.value))
                values = {node.key: stop.value}
                continue
            except Exception as exc:
                finished.append((node.key, False, exc))
                return
            task = self.context.loop.create_task(
                self._continue_inline(work, i, coro, yielded), context=context
            )
            self._tasks[work.key] = task
            return

    def _report(self, finished: list[Outcome]) -> None:
        self.context.reporter.ended(finished)

    async def _continue_inline(
        self, work: Work, i: int, coro: Coroutine[Any, Any, Any], yielded: Any
    ) -> None:
        report = self.context.reporter
        node = work.nodes[i]
        stopped = self._stops.open(work.key) if len(work.nodes) > i + 1 else ()
        try:
            value = await resume(coro, yielded)
            report.done(node.key, value)
            for node in work.nodes[i + 1 :]:
                if node.key in stopped:  # cancelled while the task before it ran
                    return
                report.running(node.key)
                value = await call(node, {node.deps[0]: value})
                report.done(node.key, value)
        except asyncio.CancelledError:
            report.cancelled(node.key)
            raise
        except Exception as exc:
            report.failed(node.key, exc)
        finally:
            self._forget(work.key)
            self._stops.done(work.key, stopped)

    def _all_async(self, work: Work) -> bool:
        # The function asked last is remembered with its answer: most units run
        # the same function as the one before (a fan-out, a chain), on the hot path.
        for node in work.nodes:
            func = node.func
            if func is not self._last_func:
                self._last_func = func
                self._last_async = self._is_async_func(func)
            if not self._last_async:
                return False
        return True

    def _is_async_func(self, func: Any) -> bool:
        if type(func) is types.FunctionType:  # by code: closures of one def share it
            code = func.__code__
            flag = self._is_async.get(code)
            if flag is None:
                flag = self._is_async[code] = inspect.iscoroutinefunction(func)
            return flag
        return inspect.iscoroutinefunction(func)  # partials, bound methods, callable objects

    async def _run_pooled(self, work: Work) -> None:
        report = self.context.reporter
        report.running(work.key)  # handed to the pool (a thread may still be busy)
        # asked before each call, the first too (threads: a set; processes: flag files)
        stopped = self._stops.open(work.key)
        try:
            flags = self._stops.flags() if self._processes else stopped
            outcomes = await self._pool.run(work, flags)
        except asyncio.CancelledError:
            report.cancelled(work.key)
            raise
        except Exception as exc:  # a dead worker, an unpicklable call
            report.failed(work.key, exc)
            return
        finally:
            self._forget(work.key)
            self._stops.done(work.key, stopped)
        report.ended(outcomes)

    async def _run_command(self, work: Work) -> None:
        report = self.context.reporter
        cmd: Command = work.payload
        report.running(work.key)
        try:
            result = await run_command(cmd)
        except asyncio.CancelledError:
            report.cancelled(work.key)
            raise
        except Exception as exc:
            report.failed(work.key, exc)
        else:
            report.done(work.key, result)
        finally:
            self._forget(work.key)

    def _forget(self, key: str) -> None:
        # Only this attempt's Task: reporting its failure may already have submitted
        # a retry of the same key, whose Task cancel() and close() must still find.
        if self._tasks.get(key) is asyncio.current_task():
            del self._tasks[key]

    # -- cancel / close -----------------------------------------------------------------

    async def cancel(self, work: Work) -> None:
        # Before anything else (the executor runs this first step at once): no body
        # of work.nodes starts any more, in a thread, a worker process or on the loop.
        self._stops.stop(work.nodes)
        task = self._tasks.pop(work.key, None)
        if task is not None and not task.done():
            task.cancel()

    async def cancel_tail(self, work: Work, key: str) -> None:
        # At once too: a thread, a worker process or the loop task running the chain
        # checks before each call, so no body from ``key`` on starts.
        self._stops.stop(work.nodes[work.unit.keys.index(key) :], head=work.key)

    # -- AsyncFlow's backends API (task dicts) ---------------------------------------------

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> list[asyncio.Task[None]]:
        """Start every task dict; states go to the registered callback. Returns the
        asyncio tasks running them."""
        return self._dicts.submit(tasks)

    async def cancel_task(self, uid: str) -> bool:
        """Cancel a submitted task (reported ``CANCELED`` at once); False when it is
        unknown or has ended."""
        return self._dicts.cancel(uid)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [*self._dicts.cancel_all(), *(t for t in self._tasks.values() if not t.done())]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        # Never blocks the loop, nor waits long for threads that cannot be stopped.
        await self._pool.close()
        self._stops.close()

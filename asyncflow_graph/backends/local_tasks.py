"""``LocalExecutionBackend`` driven through AsyncFlow's backends API: task dicts in,
``callback(task, state)`` out.

Each submitted dict runs in its own asyncio task: ``RUNNING`` is reported when it
starts, then ``DONE`` (``return_value``, ``stdout``, ``exit_code``) or ``FAILED``
(``exception``, ``stderr``, ``exit_code``); ``cancel_task`` reports ``CANCELED`` at
once. Functions run where the native path runs them (coroutine functions on the
loop unless the pool is a process pool, plain functions in the pool, both sync and
async accepted); commands run as child processes of the loop, killed when cancelled.
A prompt fails with ``NotImplementedError``: this backend serves no model. A task
leaves ``backend.tasks`` when it ends, so nothing accumulates there.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Protocol

from ..spec import Call
from .asyncflow_api import command_of
from .helpers import run_chain, run_command, run_pickled_chain

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

__all__ = ["TaskDictRunner"]


class DictBackend(Protocol):
    """What the runner needs of its ``LocalExecutionBackend`` (a protocol: the
    backend module imports this one)."""

    name: str
    tasks: dict[str, Any]
    _work_dir: str
    _task_callback: Callable[[dict[str, Any], str], Any]

    @property
    def executor(self) -> Executor: ...
    @property
    def runs_inline(self) -> bool: ...
    @property
    def uses_processes(self) -> bool: ...


class TaskDictRunner:
    """The task-dict side of one ``LocalExecutionBackend``."""

    def __init__(self, backend: DictBackend) -> None:
        self.backend = backend
        self._running: dict[str, asyncio.Task[None]] = {}

    def submit(self, tasks: list[dict[str, Any]]) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        started = []
        for task in tasks:
            uid = str(task["uid"])
            running = loop.create_task(self._run(uid, task), name=f"asyncflow-task-{uid}")
            task["future"] = running
            self.backend.tasks[uid] = task
            self._running[uid] = running
            started.append(running)
        return started

    def cancel(self, uid: str) -> bool:
        running = self._running.pop(uid, None)
        task = self.backend.tasks.pop(uid, None)
        if running is None or task is None or running.done():
            return False
        running.cancel()
        self.backend._task_callback(task, "CANCELED")
        return True

    def cancel_all(self) -> list[asyncio.Task[None]]:
        """Cancel every running dict task (each reported CANCELED); the asyncio
        tasks, to wait for."""
        tasks = list(self._running.values())
        for uid in list(self._running):
            self.cancel(uid)
        return tasks

    async def _run(self, uid: str, task: dict[str, Any]) -> None:
        report = self.backend._task_callback
        try:
            if task.get("prompt"):
                raise NotImplementedError(
                    f"LocalExecutionBackend {self.backend.name!r} cannot serve prompt tasks "
                    f"(task {uid!r}); register an AI inference backend and route the task "
                    f"with @flow.prompt_task(backend='<name>')"
                )
            report(task, "RUNNING")
            if task.get("function") is not None:
                value = await self._call(uid, task)
                task.update(return_value=value, stdout=str(value), exit_code=0)
            else:
                out = await run_command(command_of(task, self.backend._work_dir))
                task.update(stdout=out, stderr="", exit_code=0, return_value=None)
            state = "DONE"
        except asyncio.CancelledError:
            if self._running.pop(uid, None) is not None:  # not through cancel(): report
                self.backend.tasks.pop(uid, None)
                report(task, "CANCELED")
            raise
        except Exception as exc:
            task.update(
                exception=exc,
                stderr=getattr(exc, "stderr", None) or str(exc),
                stdout=getattr(exc, "stdout", None),
                exit_code=getattr(exc, "exit_code", 1),
                return_value=None,
            )
            state = "FAILED"
        self._running.pop(uid, None)
        self.backend.tasks.pop(uid, None)
        report(task, state)

    async def _call(self, uid: str, task: dict[str, Any]) -> Any:
        func = task["function"]
        args = tuple(task.get("args") or ())
        kwargs = dict(task.get("kwargs") or {})
        backend = self.backend
        if backend.runs_inline and inspect.iscoroutinefunction(func):
            return await func(*args, **kwargs)
        calls: list[Call] = [Call(uid, func, args, kwargs, (), False)]
        loop = asyncio.get_running_loop()
        if backend.uses_processes:
            import cloudpickle

            blob = await loop.run_in_executor(
                backend.executor, run_pickled_chain, cloudpickle.dumps((calls, {}))
            )
            outcomes = cloudpickle.loads(blob)
        else:
            outcomes = await loop.run_in_executor(backend.executor, run_chain, calls, {})
        _key, ok, value = outcomes[0]
        if not ok:
            raise value
        return value

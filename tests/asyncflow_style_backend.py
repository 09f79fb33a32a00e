"""A third-party execution backend written the AsyncFlow / RHAPSODY way.

It knows nothing about asyncflow_graph: it is duck typed exactly like the backends that
radical.asyncflow 0.6 accepts (``name``, ``register_callback``, ``get_task_states_map``,
``submit_tasks(list[dict])``, ``cancel_task``, ``shutdown``, ``state``, ``task_state_cb``,
``build_task`` and the data-linking hooks), is awaitable and an async context manager, and
reports task states through the registered callback as ``callback(task_dict, state)``.

Function tasks are awaited on the event loop (sync callables are called directly);
executable tasks run as subprocesses; prompt tasks are answered by an optional
``responder`` callable (without one they fail with NotImplementedError).

Every task dict received is kept in ``self.received`` and every reported state in
``self.reported`` as ``(uid, state)`` so tests can assert on what the engine sent.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shlex
from collections.abc import Callable
from typing import Any


class TaskStates:
    """The task-state names of the RHAPSODY protocol (CANCELED with one L)."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    terminal_states = frozenset({DONE, FAILED, CANCELED})


class AsyncFlowStyleBackend:
    supports_implicit_data_linking = False
    supports_explicit_data_linking = False

    def __init__(
        self,
        name: str = "thirdparty",
        responder: Callable[[str], str] | None = None,
    ) -> None:
        self.name = name
        self.responder = responder
        self.received: list[dict[str, Any]] = []
        self.reported: list[tuple[str, str]] = []
        self._callback: Callable[[dict[str, Any], str], Any] = lambda task, state: None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._state = "IDLE"
        self._work_dir = os.getcwd()
        self.is_attached = False
        self.attached_to: list[str] = []
        self.shutdown_calls = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def _start(self) -> AsyncFlowStyleBackend:
        self._state = "RUNNING"
        return self

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._start().__await__()

    async def __aenter__(self) -> AsyncFlowStyleBackend:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def state(self) -> str:
        return self._state

    async def shutdown(self) -> None:
        self.shutdown_calls += 1
        pending = [t for t in self._running.values() if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._running.clear()
        self._state = "SHUTDOWN"

    # -- protocol --------------------------------------------------------------------------
    def register_callback(self, func: Callable[[dict[str, Any], str], Any]) -> None:
        self._callback = func

    def get_task_states_map(self) -> TaskStates:
        return TaskStates()

    def task_state_cb(self, task: dict[str, Any] | None = None, state: str | None = None) -> None:
        """RHAPSODY's hook for backend-native state events; unused here."""

    def build_task(self, uid: str, task_desc: dict[str, Any], task_specific_kwargs: dict) -> None:
        """Nothing to translate: tasks are executed straight from the AsyncFlow dict."""

    def link_implicit_data_deps(self, src_task: dict[str, Any], dst_task: dict[str, Any]) -> None:
        """Tasks share the local filesystem; nothing to link."""

    def link_explicit_data_deps(
        self,
        src_task: dict[str, Any] | None = None,
        dst_task: dict[str, Any] | None = None,
        file_name: str | None = None,
        file_path: str | None = None,
    ) -> dict[str, Any]:
        return {"source": file_path or file_name, "target": file_name}

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            self.received.append(task)
            self._running[task["uid"]] = asyncio.create_task(self._run(task))

    async def cancel_task(self, uid: str) -> bool:
        running = self._running.get(uid)
        if running is None or running.done():
            return False
        running.cancel()
        return True

    # -- execution -------------------------------------------------------------------------
    def _report(self, task: dict[str, Any], state: str) -> None:
        self.reported.append((task["uid"], state))
        self._callback(task, state)

    async def _run(self, task: dict[str, Any]) -> None:
        self._report(task, TaskStates.RUNNING)
        try:
            if task.get("prompt"):
                state = await self._run_prompt(task)
            elif task.get("function") is not None:
                state = await self._run_function(task)
            else:
                state = await self._run_executable(task)
        except asyncio.CancelledError:
            self._report(task, TaskStates.CANCELED)
            return
        except Exception as exc:
            task.update(return_value=None, stdout=None, stderr=str(exc), exit_code=1, exception=exc)
            state = TaskStates.FAILED
        finally:
            self._running.pop(task["uid"], None)
        self._report(task, state)

    async def _run_function(self, task: dict[str, Any]) -> str:
        result = task["function"](*task.get("args", ()), **task.get("kwargs", {}))
        if inspect.isawaitable(result):
            result = await result
        task.update(return_value=result, stdout=str(result), stderr="", exit_code=0)
        return TaskStates.DONE

    async def _run_executable(self, task: dict[str, Any]) -> str:
        argv = [task["executable"], *task.get("arguments", [])]
        options = task.get("task_backend_specific_kwargs") or {}
        if options.get("shell", False):
            proc = await asyncio.create_subprocess_shell(
                shlex.join(argv),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        task.update(
            stdout=out.decode(), stderr=err.decode(), exit_code=proc.returncode, exception=None
        )
        return TaskStates.DONE if proc.returncode == 0 else TaskStates.FAILED

    async def _run_prompt(self, task: dict[str, Any]) -> str:
        if self.responder is None:
            raise NotImplementedError(f"{type(self).__name__} {self.name!r} serves no prompts")
        answer = self.responder(task["prompt"])
        task.update(stdout=answer, return_value=answer, stderr="", exit_code=0)
        return TaskStates.DONE

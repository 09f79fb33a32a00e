"""Coroutines the executor runs on the engine's own loop for a key: block bodies
and async executable/prompt builders. They are run state too: ending the key
(a cancel, a failed dependency, shutdown) cancels them."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from ..protocol import Reporter

__all__ = ["LoopTasks"]


class LoopTasks:
    __slots__ = ("_loop", "_reporter", "_tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop, reporter: Reporter) -> None:
        self._loop = loop
        self._reporter = reporter
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def run_body(self, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        """A block body: how it ends is how ``key`` ends."""
        task = self._loop.create_task(coro)
        self._tasks[key] = task
        task.add_done_callback(partial(self._body_ended, key))

    def run(
        self,
        key: str,
        coro: Coroutine[Any, Any, Any],
        then: Callable[[asyncio.Task[Any]], None],
        context: contextvars.Context | None = None,
    ) -> None:
        """A step of ``key``'s work (a builder): ``then(task)`` when it ends."""
        task = self._loop.create_task(coro, context=context)
        self._tasks[key] = task
        task.add_done_callback(partial(self._step_ended, key, then))

    def cancel(self, key: str, msg: str | None) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and not task.done():
            task.cancel(msg)

    def _step_ended(
        self, key: str, then: Callable[[asyncio.Task[Any]], None], task: asyncio.Task[Any]
    ) -> None:
        self._tasks.pop(key, None)
        then(task)

    def _body_ended(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(key, None)
        if task.cancelled():
            self._reporter.cancelled(key, _cancel_message(task))
            return
        exc = task.exception()
        if exc is not None:
            self._reporter.failed(key, exc)
        else:
            self._reporter.done(key, task.result())


def _cancel_message(task: asyncio.Task[Any]) -> str | None:
    try:
        task.result()
    except asyncio.CancelledError as exc:
        return exc.args[0] if exc.args else None
    return None

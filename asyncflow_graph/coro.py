"""Running a coroutine's first step outside a Task, and continuing it in one
(what asyncio's eager tasks do in 3.12): a coroutine that finishes without
suspending then costs no Task and no loop turn. Used by the local backend for
async task bodies and by the executor for async builders."""

from __future__ import annotations

import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["first_step", "resume"]


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Continue ``coro`` inside a Task after its first step ran outside one (what
    an eager task does): pass what it yields up to the Task, and the Task's answers
    (values, exceptions, cancellation) down to it. ``yield from`` cannot do this:
    it would start the coroutine again with a first ``send(None)``."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def first_step(
    coro: Coroutine[Any, Any, Any],
) -> tuple[Any, tuple[Coroutine[Any, Any, Any], contextvars.Context] | None]:
    """Run ``coro`` up to its first suspension, in a context of its own (as a Task
    would). ``(value, None)`` when it finished; otherwise ``(None, (rest, context))``:
    ``rest`` continues it inside a Task made with that context. Raises what the
    coroutine raised."""
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value, None
    return None, (_rest(coro, yielded), context)


async def _rest(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await resume(coro, yielded)

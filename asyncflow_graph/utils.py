"""AsyncFlow's ``radical.asyncflow.utils`` helpers.

The engine does not use the process-wide counter: its uids are per engine (AsyncFlow
shares one counter between every engine and resets it whenever any engine shuts
down, so two engines can hand out the same uid). The helpers are here for programs
that call them.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

__all__ = ["get_event_loop_or_raise", "get_next_uid", "reset_uid_counter"]

_lock = threading.Lock()
_counter = [itertools.count(1)]  # a list: reset swaps the counter in place


def get_next_uid() -> str:
    """The next value of the process-wide counter, six digits ("000001")."""
    with _lock:
        return f"{next(_counter[0]):06d}"


def reset_uid_counter() -> None:
    """Start the process-wide counter again from 1."""
    with _lock:
        _counter[0] = itertools.count(1)


def get_event_loop_or_raise(context_name: str = "WorkflowEngine") -> asyncio.AbstractEventLoop:
    """The running event loop, or a ``RuntimeError`` saying how to get one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{context_name} must be created within an async context: use "
            f"`await {context_name}.create(...)` inside a coroutine run by asyncio.run()"
        ) from None

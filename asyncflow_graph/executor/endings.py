"""Carrying out ``Ended``: the keys that failed or were cancelled.

For each key, in the order the run state ended them: the observers hear of it, its
work is stopped (a loop task, a backend's work, a running chain's tail), its handle
ends, and what only it needed is let go of. An exception while ending one key ends
that key's handle with an ``EngineError``; the other keys end as usual.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..errors import DependencyFailureError
from .faults import internal_error
from .handles import Handles
from .inflight import InFlight
from .looptasks import LoopTasks
from .observers import Observers
from .retention import Retention, clear_frames
from .state import RunState

__all__ = ["resolve_ended"]

log = logging.getLogger("asyncflow_graph")


class Executor(Protocol):
    """What ending keys needs of the executor."""

    state: RunState
    observers: Observers
    loop_tasks: LoopTasks
    inflight: InFlight
    handles: Handles
    retention: Retention


def resolve_ended(executor: Executor, keys: list[str]) -> None:
    executor.observers.flush()  # observers see the ends in the order they happened
    for key in keys:
        try:
            _resolve(executor, key)
        except Exception as exc:  # never leave the other keys' futures pending
            log.exception("resolving the future of %r failed", key)
            executor.handles.fail(key, internal_error(executor.state, key, "ended", exc))


def _resolve(executor: Executor, key: str) -> None:
    state, observers, handles = executor.state, executor.observers, executor.handles
    executor.loop_tasks.cancel(key, state.cancelled.get(key))
    if key in state.failures:
        exc = state.failures[key]
        if not isinstance(exc, DependencyFailureError):  # never raised: no frames
            clear_frames(exc)  # a reported failure keeps no frame's locals alive
        if observers.all:
            observers.notify("on_failed", key, exc)
        executor.inflight.stop(key, state.nodes[key], cancelled=False)
        handles.fail(key, exc)
    else:
        msg = state.cancelled.get(key)
        if observers.all:
            observers.notify("on_cancelled", key, msg)
        executor.inflight.stop(key, state.nodes[key], cancelled=True)
        handles.cancel(key, msg)
    retention = executor.retention
    # A failure whose dependents carry it on is not logged for a handle nobody holds.
    carried = key in state.failures and bool(retention.pending.get(key))
    if not handles.ended(key, quiet=carried):
        retention.unheld.add(key)
    retention.ended(key, state.nodes[key].deps)

"""Errors the executor gives a task when its own machinery failed for it.

An exception inside the engine's callbacks (compiling a slice, dispatching a job,
resolving a future) must end the futures it concerns and no others: the intake
and the driver catch it around each task and end that task with an
:class:`~asyncflow_graph.errors.EngineError` that names the task, the step and the
internal cause; everything else in the same batch runs on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import EngineError, shorten
from ..spec import Node

if TYPE_CHECKING:
    from .instructions import RetryAfter
    from .state import RunState

__all__ = ["compile_error", "internal_error", "log_retry", "stop_iteration_error"]

log = logging.getLogger("asyncflow_graph")


def _error(node: Node | None, key: str, step: str, exc: BaseException) -> EngineError:
    name = f"{node.name!r} [{key}]" if node is not None else repr(key)
    error = EngineError(
        f"task {name} could not be {step}: {type(exc).__name__}: {shorten(str(exc))} (an "
        f"error inside asyncflow_graph, not in the task; the other tasks run on)"
    )
    error.__cause__ = exc
    return error


def internal_error(state: RunState, key: str, step: str, exc: BaseException) -> EngineError:
    """``key`` ended because ``step`` ("dispatched", ...) raised ``exc``."""
    return _error(state.nodes.get(key), key, step, exc)


def compile_error(node: Node, exc: BaseException) -> EngineError:
    return _error(node, node.key, "compiled", exc)


def stop_iteration_error(node: Node, exc: BaseException) -> RuntimeError:
    """What a task that raised StopIteration fails with: an asyncio future refuses
    StopIteration (it would end the generator awaiting it), so it travels as the
    cause of a RuntimeError, as PEP 479 does for generators."""
    error = RuntimeError(f"task {node.name!r} [{node.key}] raised StopIteration({exc})")
    error.__cause__ = exc
    return error


def log_retry(node: Node, retry: RetryAfter) -> None:
    log.warning(
        "task %r failed (%s: %s); retry %d of %d",
        node.name,
        type(retry.error).__name__,
        shorten(str(retry.error)),
        retry.job.attempts,
        node.options.retries,
    )

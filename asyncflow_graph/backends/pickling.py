"""Naming what cannot be pickled: a task's arguments are shipped to worker
processes and Dask workers; when pickling them fails, the error names the task and,
when one argument alone is the cause, that argument."""

from __future__ import annotations

from typing import Any

from ..errors import SerializationError
from ..spec import Call, Node

__all__ = ["unpicklable_argument", "unpicklable_task"]


def unpicklable_argument(call: Call | Node) -> str:
    """`` (argument 2, a lock)`` for the first argument of ``call`` that cannot be
    pickled with cloudpickle, or ``""`` when each one can alone."""
    import cloudpickle

    items: dict[str, Any] = {f"argument {i + 1}": a for i, a in enumerate(call.args)}
    items.update({f"argument {k}=": v for k, v in call.kwargs.items()})
    for label, value in items.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            return f" ({label}, a {type(value).__name__})"
    return ""


def unpicklable_task(
    node: Node, key: str, where: str, exc: BaseException, culprit: str | None = None
) -> SerializationError:
    """The error of a task whose arguments cannot be sent ``where`` (e.g. "a worker
    process of backend 'p'")."""
    if culprit is None:
        culprit = unpicklable_argument(node)
    err = SerializationError(
        f"task {node.name!r} [{key}] cannot be sent to {where}: its arguments cannot be "
        f"pickled{culprit}: {type(exc).__name__}: {exc}. Pass picklable values, or run "
        f"it on a thread backend"
    )
    err.__cause__ = exc
    return err

"""Handles: what a decorated call returns. A handle *is* an ``asyncio.Future``.

The engine resolves it; ``.state``, ``.key`` and ``.id`` are plain slots, while
``.task``/``.block`` (AsyncFlow's description dict) and ``.graph`` are built only
when asked for, so creating a handle costs one future and four stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .describe import describe
from .spec import TaskKind, register_reference_type, substitute

if TYPE_CHECKING:
    from .engine import WorkflowEngine
    from .graph import Graph
    from .visualize import Drawing

__all__ = ["LazyTaskFuture", "RemoteTaskFuture", "TaskFuture"]


class TaskFuture(asyncio.Future[Any]):
    #: ``_payload``: the built command or prompt of an executable/prompt task, set
    #: when built (never set for function tasks and blocks: read with getattr)
    __slots__ = ("_engine", "_payload", "key", "state")

    key: str
    state: str
    _engine: WorkflowEngine

    @property
    def id(self) -> str:
        """AsyncFlow's short id ("000003" for "task.000003")."""
        return self.key.rpartition(".")[2]

    @property
    def uid(self) -> str:
        return self.key

    @property
    def node(self) -> Any:
        return self._engine._node(self.key)

    def _description(self) -> dict[str, Any]:
        engine = self._engine
        node = engine._node(self.key)
        values = engine._executor.state.values
        args, kwargs = node.args, node.kwargs
        if node.deps and all(d in values for d in node.deps):
            args, kwargs = substitute(node.args, node.kwargs, values, node.deep)
        payload = getattr(self, "_payload", None)
        return describe(node, engine._all_nodes(), args=args, kwargs=kwargs, payload=payload)

    @property
    def task(self) -> dict[str, Any]:
        if self._engine._node(self.key).kind is TaskKind.BLOCK:
            raise AttributeError("a block handle has .block, not .task")
        return self._description()

    @property
    def block(self) -> dict[str, Any]:
        if self._engine._node(self.key).kind is not TaskKind.BLOCK:
            raise AttributeError("a task handle has .task, not .block")
        return self._description()

    @property
    def graph(self) -> Graph:
        """This task and its ancestors, as an immutable graph."""
        return self._engine.graph.cull([self.key])

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        return self._engine._visualize([self.key], filename, **kwargs)

    def cancel(self, msg: Any = None) -> bool:
        """Cancel this task's work and every dependent; False once it has ended."""
        if self.done():
            return False
        return self._engine._cancel(self, msg)

    def __repr__(self) -> str:
        return f"<TaskFuture {self.key} state={self.state}>"


class LazyTaskFuture(TaskFuture):
    """Handle of a lazy engine: awaiting it (or adding a done-callback, as
    ``gather``/``wait`` do) runs it and exactly its ancestors."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        self._engine._demand(self.key)
        return super().__await__()

    __iter__ = __await__

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        self._engine._demand(self.key)
        super().add_done_callback(fn, context=context)


class RemoteTaskFuture(TaskFuture):
    """A handle whose task is done but whose value stayed on a remote backend (a
    Dask cluster): awaiting it, or adding a done-callback, fetches the value once.
    The executor switches a handle to this class when nobody awaits it yet, so
    handles of intermediate results never pull data to this process."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        self._engine._executor.fetch_for_handle(self.key)
        return super().__await__()

    __iter__ = __await__

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        self._engine._executor.fetch_for_handle(self.key)
        super().add_done_callback(fn, context=context)

    def result(self) -> Any:
        if not self.done():
            raise asyncio.InvalidStateError(
                f"task {self.key!r} is done but its result is still on its backend; "
                f"`await` the handle to fetch it"
            )
        return super().result()


register_reference_type(TaskFuture)
register_reference_type(LazyTaskFuture)
register_reference_type(RemoteTaskFuture)

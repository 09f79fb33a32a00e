"""Handles: what a decorated call returns. A handle *is* an ``asyncio.Future``.

The executor resolves it; ``.state``, ``.key`` and ``.id`` are plain slots, while
``.task``/``.block`` (AsyncFlow's description dict) and ``.graph`` are built only
when asked for, so creating a handle costs one future and four stores. A handle
talks to its run only through the small :class:`HandleHost` protocol (the
executor's intake implements it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .spec import Node, TaskKind, register_reference_type

if TYPE_CHECKING:
    from .compiler import Plan
    from .executor.events import RunView
    from .graph import Graph
    from .visualize import Drawing

__all__ = [
    "FailedTaskFuture",
    "HandleHost",
    "LazyTaskFuture",
    "RemoteTaskFuture",
    "TaskFuture",
    "report_once",
]


class HandleHost(Protocol):
    """What a handle may ask of the run it belongs to."""

    loop: asyncio.AbstractEventLoop
    engine_uid: str

    @property
    def graph(self) -> Graph: ...
    @property
    def view(self) -> RunView: ...
    def node(self, key: str) -> Node: ...
    def graph_of(self, keys: Iterable[str]) -> Graph: ...
    def describe(self, key: str) -> dict[str, Any]: ...
    def plan_for(self, keys: Iterable[str] | None) -> Plan: ...
    def cancel(self, key: str, msg: Any) -> bool: ...
    def demand(self, key: str) -> None: ...
    def awaiting(self, key: str) -> None: ...
    def fetch(self, key: str) -> None: ...


class TaskFuture(asyncio.Future[Any]):
    __slots__ = ("host", "key", "state")

    key: str
    state: str
    #: the run this handle belongs to (set by the intake that made it)
    host: HandleHost

    @property
    def id(self) -> str:
        """AsyncFlow's short id ("000003" for "task.000003")."""
        return self.key.rpartition(".")[2]

    @property
    def uid(self) -> str:
        return self.key

    @property
    def engine_uid(self) -> str:
        """The uid of the engine this handle belongs to."""
        return self.host.engine_uid

    @property
    def node(self) -> Node:
        return self.host.node(self.key)

    def describe(self) -> dict[str, Any]:
        """AsyncFlow's description dict of this task or block (``.task``/``.block``)."""
        return self.host.describe(self.key)

    @property
    def task(self) -> dict[str, Any]:
        if self.host.node(self.key).kind is TaskKind.BLOCK:
            raise AttributeError("a block handle has .block, not .task")
        return self.host.describe(self.key)

    @property
    def block(self) -> dict[str, Any]:
        if self.host.node(self.key).kind is not TaskKind.BLOCK:
            raise AttributeError("a task handle has .task, not .block")
        return self.host.describe(self.key)

    @property
    def graph(self) -> Graph:
        """This task and its ancestors, as an immutable graph."""
        return self.host.graph_of([self.key])

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        from .visualize import visualize

        host = self.host
        return visualize(host.plan_for([self.key]), filename=filename, state=host.view, **kwargs)

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done():  # a block body must not wait for what waits for it
            self.host.awaiting(self.key)
        return super().__await__()

    __iter__ = __await__

    def cancel(self, msg: Any = None) -> bool:
        """Cancel this task's work and every dependent; False once it has ended."""
        if self.done():
            return False
        return self.host.cancel(self.key, msg)

    def __repr__(self) -> str:
        return f"<TaskFuture {self.key} state={self.state}>"

    def _repr_html_(self) -> str:
        """Jupyter: the task's name, key and state, and its value or error once ended."""
        from html import escape

        head = f"<b>{escape(self.node.name)}</b> <code>{escape(self.key)}</code> {self.state}"
        return f"<div>{head}{escape(self._outcome())}</div>"

    def _outcome(self) -> str:
        if not self.done():
            return ""
        if self.cancelled():
            return " (cancelled)"
        if isinstance(self, RemoteTaskFuture):
            return " (its value is on its backend: await the handle)"
        exc = self.exception()
        if exc is not None:
            return f": {type(exc).__name__}: {exc}"
        text = repr(self.result())
        return f" = {text if len(text) <= 200 else text[:200] + '...'}"


class LazyTaskFuture(TaskFuture):
    """Handle of a lazy engine: awaiting it (or adding a done-callback, as
    ``gather``/``wait`` do) runs it and exactly its ancestors."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        self.host.demand(self.key)
        return super().__await__()

    __iter__ = __await__

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        self.host.demand(self.key)
        super().add_done_callback(fn, context=context)


class RemoteTaskFuture(TaskFuture):
    """A handle whose task is done but whose value stayed on a remote backend (a
    Dask cluster): awaiting it, or adding a done-callback, fetches the value once.
    The executor switches a handle to this class when nobody awaits it yet, so
    handles of intermediate results never pull data to this process."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        self.host.fetch(self.key)
        return super().__await__()

    __iter__ = __await__

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        self.host.fetch(self.key)
        super().add_done_callback(fn, context=context)

    def result(self) -> Any:
        if not self.done():
            raise asyncio.InvalidStateError(
                f"task {self.key!r} is done but its result is still on its backend; "
                f"`await` the handle to fetch it"
            )
        return super().result()


class FailedTaskFuture(TaskFuture):
    """A handle that failed. A failure reaches the user once: retrieving it here, or
    through a dependent's :class:`~asyncflow_graph.errors.DependencyFailureError`
    (whose ``origin`` it is), counts for every handle that carries it, and a failure
    nobody retrieved is logged by the first of its handles to be collected, not by
    each (a dependent logs the failure it comes from, not its chain of causes). The
    executor switches a handle to this class when it sets the exception (the same
    slots: the switch costs nothing)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        _retrieved(self._exception)
        return super().__await__()

    __iter__ = __await__

    def result(self) -> Any:
        _retrieved(self._exception)
        return super().result()

    def exception(self) -> BaseException | None:
        _retrieved(self._exception)
        return super().exception()

    def __del__(self) -> None:
        if self._log_traceback:  # nobody retrieved it from this handle
            exc = self._exception
            origin = _origin(exc)
            if getattr(origin, _MARK, False):
                self._log_traceback = False
            else:
                _retrieved(exc)  # reported now: by no other handle again
                if origin is not exc:
                    self._log_traceback = False
                    self._loop.call_exception_handler(
                        {
                            "message": f"{type(self).__name__} exception was never "
                            f"retrieved: {self.key} did not run because a task it depends "
                            f"on failed, with",
                            "exception": origin,
                            "future": self,
                        }
                    )
        super().__del__()


_MARK = "_asyncflow_reported"


def _origin(exc: BaseException | None) -> BaseException | None:
    return getattr(exc, "origin", None) or exc


def _retrieved(exc: BaseException | None) -> None:
    with contextlib.suppress(AttributeError):  # a type that takes no attributes
        setattr(_origin(exc), _MARK, True)


def report_once(fut: asyncio.Future[Any]) -> None:
    """Make failed handle ``fut`` a :class:`FailedTaskFuture`."""
    if isinstance(fut, TaskFuture):
        fut.__class__ = FailedTaskFuture


register_reference_type(TaskFuture)
register_reference_type(LazyTaskFuture)
register_reference_type(RemoteTaskFuture)
register_reference_type(FailedTaskFuture)

"""The run's handles: held while their task runs, weakly once it ended.

The intake makes each handle and puts it in :attr:`Handles.open`: the run needs it
to resolve it. When the task ends, the handle leaves ``open``; if anyone else still
holds it (the user, ``gather``), a :class:`~.retention.HandleRef` to it goes into
:attr:`Handles.refs`, whose callback tells :mod:`.retention` when it is gone; if
nobody does, the key is unheld at once (no weak reference is made for it: the
common case of an intermediate handle costs nothing). So the user's references
decide how long an ended handle lives, and the run lets go of what only it needed.
The driver ends a handle through these methods, which do nothing for a handle that
is gone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..protocol import TaskState
from .retention import HandleRef

if TYPE_CHECKING:
    from .state import RunState

__all__ = ["Handles", "LiveHandles"]


class Handles:
    __slots__ = ("_dropped", "on_failed", "open", "refs")

    def __init__(self, dropped: Callable[[HandleRef], object]) -> None:
        #: key -> its handle, while the run may still resolve it
        self.open: dict[str, asyncio.Future[Any]] = {}
        #: key -> a weak reference to its handle, for ended keys someone holds
        self.refs: dict[str, HandleRef] = {}
        self._dropped = dropped  # told of each handle gone (retention)
        #: called with each handle failed here (the engine makes it report its error once)
        self.on_failed: Callable[[asyncio.Future[Any]], None] | None = None

    def get(self, key: str) -> asyncio.Future[Any] | None:
        """``key``'s handle, if the run or anyone else still holds it."""
        fut = self.open.get(key)
        if fut is None:
            ref = self.refs.get(key)
            if ref is not None:
                fut = ref()
        return fut

    def live(self, keys: Iterable[str]) -> list[asyncio.Future[Any]]:
        return [f for k in keys if (f := self.get(k)) is not None]

    def mapping(self) -> Mapping[str, asyncio.Future[Any]]:
        """key -> handle for the handles alive (a view: it holds none of its own)."""
        return LiveHandles(self)

    def ended(self, key: str, quiet: bool = False) -> bool:
        """``key`` ended (its handle resolved): the run lets go of its handle. True
        when someone else still holds it (it is then watched weakly). ``quiet``: a
        failure nobody holds the handle of is not logged as never retrieved (its
        dependents carry it, and log it if nobody retrieves theirs)."""
        fut = self.open.pop(key, None)
        if fut is None:
            return key in self.refs  # a handle made again for an ended key
        if self.keep(key, fut):
            return True
        if quiet:
            fut._log_traceback = False
        return False

    def keep(self, key: str, fut: asyncio.Future[Any], mine: int = 3) -> bool:
        """Watch ``fut`` weakly if anyone holds it but the ``mine`` references this
        call and its caller have (the caller's variable, this parameter and
        ``getrefcount``'s own). True if someone does."""
        if sys.getrefcount(fut) <= mine:
            return False
        self.watch(key, fut)
        return True

    def watch(self, key: str, fut: asyncio.Future[Any]) -> None:
        """Hold ``fut`` weakly from now on: tell the run when it is gone."""
        ref = HandleRef(fut, self._gone)
        ref.key = key
        self.refs[key] = ref

    def fail(self, key: str, exc: BaseException) -> None:
        fut = self.get(key)
        if fut is not None and not fut.done():
            fut.state = TaskState.FAILED  # type: ignore[attr-defined]
            fut.set_exception(exc)
            if self.on_failed is not None:
                self.on_failed(fut)  # reported once, through whichever handle

    def cancel(self, key: str, msg: Any) -> bool:
        """End ``key``'s handle cancelled (the run state has ended it, or never
        will: a key not compiled, shutdown)."""
        fut = self.get(key)
        if fut is None or fut.done():
            return False
        fut.state = TaskState.CANCELLED  # type: ignore[attr-defined]
        return asyncio.Future.cancel(fut, msg)

    def rehandle(self, key: str, fut: asyncio.Future[Any], state: RunState) -> asyncio.Future[Any]:
        """``fut`` is a new handle of the known ``key`` (a pure call again): it gets
        the state ``key`` is in, its value or error."""
        outcome = state.outcome(key)
        if outcome is None or outcome is TaskState.PENDING or outcome is TaskState.RUNNING:
            self.open[key] = fut
            fut.state = outcome or TaskState.PENDING  # type: ignore[attr-defined]
            return fut
        ref = HandleRef(fut, self._gone)
        ref.key = key
        self.refs[key] = ref
        if outcome is TaskState.DONE:
            fut.state = outcome  # type: ignore[attr-defined]
            fut.set_result(state.values[key])
        elif outcome is TaskState.FAILED:
            self.fail(key, state.failures[key])
        else:
            self.cancel(key, state.cancelled[key])
        return fut

    def _gone(self, ref: HandleRef) -> None:
        """Weakref callback (any thread): a handle is gone."""
        if self.refs.get(ref.key) is ref:
            del self.refs[ref.key]
        self._dropped(ref)

    def let_go(self, keys: Iterable[str]) -> None:
        """Drop the entries of ``keys`` whose handle is gone."""
        refs = self.refs
        for key in keys:
            ref = refs.get(key)
            if ref is not None and ref() is None:
                del refs[key]


class LiveHandles(Mapping[str, "asyncio.Future[Any]"]):
    """key -> handle, for the handles alive (a view over the run's two tables)."""

    __slots__ = ("_handles",)

    def __init__(self, handles: Handles) -> None:
        self._handles = handles

    def __getitem__(self, key: str) -> asyncio.Future[Any]:
        fut = self._handles.get(key)
        if fut is None:
            raise KeyError(key)
        return fut

    def __iter__(self) -> Iterator[str]:
        handles = self._handles
        yield from list(handles.open)
        yield from (k for k, r in list(handles.refs.items()) if r() is not None)

    def __len__(self) -> int:
        handles = self._handles
        return len(handles.open) + sum(1 for r in list(handles.refs.values()) if r() is not None)

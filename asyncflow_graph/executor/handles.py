"""The run's handles: held weakly, ended here.

The intake makes each handle and puts a :class:`~.retention.HandleRef` to it in
:attr:`Handles.refs`; the user's references decide how long it lives (a handle
nobody holds has no one to tell, and the run lets go of what only it needed:
:mod:`.retention`). The driver ends a handle through these methods, which do
nothing for a handle that is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..protocol import TaskState
from .retention import HandleRef, LiveHandles

if TYPE_CHECKING:
    from .state import RunState

__all__ = ["Handles"]


class Handles:
    __slots__ = ("on_failed", "refs")

    def __init__(self) -> None:
        #: key -> a weak reference to its handle
        self.refs: dict[str, HandleRef] = {}
        #: called with each handle failed here (the engine makes it report its error once)
        self.on_failed: Callable[[asyncio.Future[Any]], None] | None = None

    def get(self, key: str) -> asyncio.Future[Any] | None:
        """``key``'s handle, if anyone still holds it."""
        ref = self.refs.get(key)
        return ref() if ref is not None else None

    def mapping(self) -> Mapping[str, asyncio.Future[Any]]:
        """key -> handle for the handles still alive (a view: it holds none)."""
        return LiveHandles(self.refs)

    def live(self, keys: Iterable[str]) -> list[asyncio.Future[Any]]:
        return [f for k in keys if (f := self.get(k)) is not None]

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
        if outcome is TaskState.DONE:
            fut.state = outcome  # type: ignore[attr-defined]
            fut.set_result(state.values[key])
        elif outcome is TaskState.FAILED:
            self.fail(key, state.failures[key])
        elif outcome is TaskState.CANCELLED:
            self.cancel(key, state.cancelled[key])
        elif outcome is TaskState.RUNNING:
            fut.state = outcome  # type: ignore[attr-defined]
        return fut

    def let_go(self, keys: Iterable[str]) -> None:
        """Drop the entries of ``keys`` whose handle is gone."""
        refs = self.refs
        for key in keys:
            ref = refs.get(key)
            if ref is not None and ref() is None:
                del refs[key]

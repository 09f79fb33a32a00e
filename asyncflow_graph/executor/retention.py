"""What a long run lets go of: values, and everything about ended keys nobody
can ask about any more.

The run holds a handle only while its task runs; after that, weakly
(:class:`HandleRef`, see :mod:`.handles`): the user's references decide how long a
handle lives. Three facts then decide what a key still needs:

* a **value** is released (replaced by :data:`RELEASED`) once the key's handle is
  gone and no dependent is still to end (one created but not compiled counts);
* a key is **forgotten** — node, value or error, duration, payload — once its
  handle is gone and every dependent is forgotten too: a held handle keeps the
  nodes of its ancestors (small), so its ``.task``, ``.graph`` and ``visualize()``
  stay whole, but not their values;
* a key still open is never touched; it is looked at again when it ends.

So a program that keeps no handle runs in flat memory, as Dask distributed forgets
a key when its last future goes. A handle is dropped on whatever thread dropped the
last reference (a worker thread, the cyclic GC): :meth:`Retention.dropped` only
queues the key; the loop does the rest.
"""

from __future__ import annotations

import asyncio
import traceback
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import RunState

__all__ = ["RELEASED", "HandleRef", "Retention", "clear_frames"]


class _Released:
    """Stands in ``RunState.values`` for a value that was let go of: the key is
    still DONE, its value is gone."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<released value>"


RELEASED: Any = _Released()


class HandleRef(weakref.ref["asyncio.Future[Any]"]):
    """A weak reference to a handle that knows the handle's key."""

    __slots__ = ("key",)
    key: str


class Retention:
    __slots__ = (
        "_dropped",
        "_loop",
        "_open",
        "_scheduled",
        "_settling",
        "_state",
        "_todo",
        "hooks",
        "pending",
        "unheld",
        "users",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, state: RunState) -> None:
        self._loop = loop
        self._state = state
        self._open = state.open_jobs  # key -> job, for the keys not ended yet
        #: key -> dependents not ended yet (created: compiled or not). The intake
        #: counts a new task's dependencies inline (its hot path), as depend() does.
        self.pending: dict[str, int] = {}
        #: key -> dependents not forgotten yet
        self.users: dict[str, int] = {}
        #: keys whose handle is gone (and that are not forgotten yet)
        self.unheld: set[str] = set()
        #: called with the keys whose value was let go of and the keys forgotten, once
        #: per batch (the executor's and the intake's own per-key tables)
        self.hooks: list[Callable[[list[str], list[str]], object]] = []
        self._dropped: list[str] = []
        self._scheduled = False
        self._todo: list[str] = []  # keys that ended this turn and may be let go of
        self._settling = False

    # -- events -----------------------------------------------------------------------

    def depend(self, deps: Iterable[str]) -> None:
        """A new task depends on ``deps``: their values stay until it ended."""
        pending, users = self.pending, self.users
        for d in deps:
            pending[d] = pending.get(d, 0) + 1
            users[d] = users.get(d, 0) + 1

    def ended(self, key: str, deps: tuple[str, ...]) -> None:
        """``key`` ended (any outcome); ``deps`` are its dependencies. What may be let
        go of now is looked at once per loop turn, for all keys that ended in it."""
        unheld, pending, todo = self.unheld, self.pending, self._todo
        before = len(todo)
        for d in deps:
            n = pending.get(d, 1) - 1
            if n:
                pending[d] = n
            else:
                pending.pop(d, None)
                if d in unheld:
                    todo.append(d)
        if key in unheld and key not in pending:  # else: when its dependents end
            todo.append(key)
        if len(todo) > before and not self._settling:
            self._settling = True
            self._loop.call_soon(self._settle_later)

    def done(self, keys: list[str]) -> None:
        """``keys`` ended with a value (the driver gives them per batch of reports):
        their dependencies' values, and their own, may be let go of now."""
        unheld, pending, nodes = self.unheld, self.pending, self._state.nodes
        todo: list[str] = []
        for key in keys:
            for d in nodes[key].deps:
                n = pending[d] - 1
                if n:
                    pending[d] = n
                else:
                    del pending[d]
                    if d in unheld:
                        todo.append(d)
            if key in unheld and key not in pending:
                todo.append(key)
        if todo:
            self._settle(todo)

    def _settle_later(self) -> None:
        self._settling = False
        todo, self._todo = self._todo, []
        self._settle(todo)

    def dropped(self, ref: HandleRef) -> None:
        """Weakref callback: a handle is gone. Any thread; the loop acts on it."""
        self._dropped.append(ref.key)
        if self._scheduled:
            return
        self._scheduled = True
        loop = self._loop
        try:
            if loop.is_closed():
                self._drain()  # nothing runs on the loop any more: no race left
            else:
                loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # closed meanwhile
            self._scheduled = False

    def _drain(self) -> None:
        self._scheduled = False
        keys, self._dropped = self._dropped, []
        self.unheld.update(keys)
        self._settle(keys)

    def held_again(self, key: str) -> None:
        """A new handle was made for ``key`` (a pure call of a known key)."""
        self.unheld.discard(key)

    # -- decisions ----------------------------------------------------------------------

    def _settle(self, todo: list[str]) -> None:
        state = self._state
        unheld, pending, users, open_jobs = self.unheld, self.pending, self.users, self._open
        values, failures, cancelled = state.values, state.failures, state.cancelled
        released: list[str] = []
        forgotten: list[str] = []
        while todo:
            k = todo.pop()
            if k in pending or k in open_jobs or k not in unheld:
                continue
            if k in users:  # its dependents ended; held ones keep the node
                if values.get(k, RELEASED) is not RELEASED:
                    values[k] = RELEASED
                    released.append(k)
            elif k in values or k in failures or k in cancelled:  # else: not compiled yet
                forgotten.append(k)
                todo.extend(self._forget(k))
        if released or forgotten:
            for hook in self.hooks:
                hook(released, forgotten)

    def _forget(self, key: str) -> list[str]:
        """Forget ``key``; returns the dependencies that may be forgotten now."""
        state = self._state
        node = state.nodes.pop(key, None)
        state.values.pop(key, None)
        state.failures.pop(key, None)
        state.cancelled.pop(key, None)
        state.durations.pop(key, None)
        self.unheld.discard(key)
        if node is None or not node.deps:
            return ()  # type: ignore[return-value]
        freed: list[str] = []
        users = self.users
        for d in node.deps:
            n = users.get(d, 1) - 1
            if n:
                users[d] = n
            else:
                users.pop(d, None)
                freed.append(d)
        return freed


def clear_frames(exc: BaseException) -> None:
    """Let go of the local variables of every frame in ``exc``'s traceback (and its
    causes'): a reported failure keeps its message, type and line numbers, not the
    objects its frames held. Frames still running are left alone."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
        todo += (e.__cause__, e.__context__)

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
import collections
import itertools
import traceback
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import RunState

__all__ = ["RELEASED", "HandleRef", "Retention", "clear_frames", "count_into"]

#: ``counts[k] += 1`` for each ``k`` of an iterable, in C (the helper
#: ``Counter.update`` runs; the module has a Python fallback): the intake counts
#: each new task's dependencies with it, on the hot path.
count_into: Callable[[dict[str, int], Iterable[str]], None]
count_into = collections._count_elements  # type: ignore[attr-defined]


class _Released:
    """Stands in ``RunState.values`` for a value that was let go of: the key is
    still DONE, its value is gone."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<released value>"


RELEASED: Any = _Released()
_NONE: Any = object()  # "no entry" for dict.pop (None may be a value or a message)


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
        "done_held",
        "done_unheld",
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
        #: done since :meth:`done` last looked (the driver appends, on its hot path):
        #: keys whose handle nobody holds, and held keys with dependencies
        self.done_unheld: list[str] = []
        self.done_held: list[str] = []
        self._dropped: list[str] = []
        self._scheduled = False
        self._todo: list[str] = []  # keys that ended this turn and may be let go of
        self._settling = False

    # -- events -----------------------------------------------------------------------

    def depend(self, deps: Iterable[str]) -> None:
        """A new task depends on ``deps``: their values stay until it ended."""
        count_into(self.pending, deps)
        count_into(self.users, deps)

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

    def done(self) -> None:
        """The keys in :attr:`done_unheld` and :attr:`done_held` ended with a value
        (the driver collects them per batch of reports): their dependencies'
        values, and their own, may be let go of now."""
        unheld_keys, held_keys = self.done_unheld, self.done_held
        if not (unheld_keys or held_keys):
            return
        unheld, pending, users = self.unheld, self.pending, self.users
        nodes, values = self._state.nodes, self._state.values
        unheld.update(unheld_keys)
        released: list[str] = []
        todo: list[str] = []
        for key in itertools.chain(unheld_keys, held_keys):
            for d in nodes[key].deps:
                n = pending[d] - 1
                if n:
                    pending[d] = n
                else:
                    del pending[d]
                    if d not in unheld:
                        continue
                    # Released here, not in _settle (the hot path): ``d`` has a value
                    # (``key`` got it) and ``key``, not forgotten, still uses it.
                    if d in users:
                        if values.get(d, RELEASED) is not RELEASED:
                            values[d] = RELEASED
                            released.append(d)
                    else:
                        todo.append(d)
            if key in unheld and key not in pending:
                todo.append(key)
        unheld_keys.clear()
        held_keys.clear()
        if todo or released:
            self._settle(todo, released)

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
        if key in self.done_unheld:  # done in this batch of reports: held now
            self.done_unheld.remove(key)
            self.done_held.append(key)

    # -- decisions ----------------------------------------------------------------------

    def _settle(self, todo: list[str], released: list[str] | None = None) -> None:
        """Let go of what ``todo``'s keys no longer need; ``released``: values let go
        of already (by :meth:`done`), told to the hooks with the rest."""
        # Releasing and forgetting in one loop, the forgetting inlined: a run whose
        # handles are all dropped forgets every key through here, once per task.
        state = self._state
        unheld, pending, users, open_jobs = self.unheld, self.pending, self.users, self._open
        nodes, values, durations = state.nodes, state.values, state.durations
        if released is None:
            released = []
        forgotten: list[str] = []
        while todo:
            k = todo.pop()
            if k in pending or k not in unheld or k in open_jobs:
                continue
            if k in users:  # its dependents ended; held ones keep the node
                if values.get(k, RELEASED) is not RELEASED:
                    values[k] = RELEASED
                    released.append(k)
                continue
            # Forgotten: node, value or error, duration (a key met again here after
            # that finds no outcome left and is passed over).
            if k in values:
                del values[k]
            elif state.failures.pop(k, _NONE) is _NONE and state.cancelled.pop(k, _NONE) is _NONE:
                continue  # not compiled yet: forgotten once it ended
            forgotten.append(k)
            if durations:
                durations.pop(k, None)
            node = nodes.pop(k, None)
            if node is not None:
                for d in node.deps:  # counted for this very node by the intake
                    n = users[d] - 1
                    if n:
                        users[d] = n
                    else:
                        del users[d]
                        todo.append(d)
        if forgotten:
            unheld.difference_update(forgotten)  # once for the lot
        if released or forgotten:
            for hook in self.hooks:
                hook(released, forgotten)


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

"""Results that stay on a remote backend until they are needed here.

A backend such as Dask reports ``done(key, Remote(...))``. The run state keeps the
:class:`~asyncflow_graph.backends.base.Remote` as the key's value, so later work on
the same backend gets the reference and the data never travels through this
process. A value is fetched — once, however many times it is asked for — only when
something here needs it: a handle that is awaited, a task on another backend, an
executable/prompt builder or a block body.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from .._gc import gc_paused
from ..errors import BackendError
from ..protocol import Backend, Remote, TaskState, Unit
from ..spec import Node, TaskKind

__all__ = ["RemoteValues"]


class RemoteValues:
    """Remote results of one executor, and the local copies fetched so far."""

    __slots__ = ("_backends", "_batch", "_fetching", "local", "on_pending", "pending", "refs")

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self._backends = backends
        #: called with a handle future whose value stayed remote and that nobody
        #: awaits yet (the engine makes awaiting it fetch the value)
        self.on_pending: Callable[[asyncio.Future[Any]], None] | None = None
        self.refs: dict[str, Remote] = {}  # key -> where its value lives
        self.local: dict[str, Any] = {}  # key -> the fetched value
        #: handle futures of remote keys nobody awaited yet (resolved on demand); weak:
        #: a handle nobody holds is not kept for its value
        self.pending: weakref.WeakValueDictionary[str, asyncio.Future[Any]]
        self.pending = weakref.WeakValueDictionary()
        self._fetching: dict[str, asyncio.Future[Any]] = {}
        #: backend -> keys asked for this loop turn, fetched together at its end
        self._batch: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.refs)

    def missing(self, keys: Iterable[str], backend: str | None) -> list[str]:
        """Keys among ``keys`` that must be fetched before work on ``backend`` (None:
        work on this process) can use them."""
        refs, local = self.refs, self.local
        return [
            k
            for k in keys
            if k in refs and k not in local and (backend is None or refs[k].backend != backend)
        ]

    def missing_for(self, head: Node, unit: Unit) -> list[str]:
        """What must be fetched before ``unit`` (headed by ``head``) can run: the
        inputs of a block body or builder (they run here), or the inputs held by
        another backend than the unit's."""
        if head.kind is TaskKind.FUNCTION:
            return self.missing(unit.inputs, unit.backend)
        return self.missing(head.deps if head.kind is TaskKind.BLOCK else unit.inputs, None)

    def view(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """``values`` with every fetched remote value replaced by its local copy."""
        return ChainMap(self.local, values) if self.local else values  # type: ignore[arg-type]

    def fetch(self, key: str) -> asyncio.Future[Any]:
        """The value of ``key``, fetched at most once. The keys asked for in one loop
        turn are fetched together, one ``fetch_many`` per backend (a gather of 10,000
        handles is one request, not 10,000)."""
        fut = self._fetching.get(key)
        if fut is not None:
            return fut
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if key in self.local:
            fut.set_result(self.local[key])
            return fut
        self._fetching[key] = fut
        if not self._batch:
            loop.call_soon(self._fetch_batch)
        self._batch.setdefault(self.refs[key].backend, []).append(key)
        return fut

    def _fetch_batch(self) -> None:
        batch, self._batch = self._batch, {}
        refs = self.refs
        for name, keys in batch.items():
            backend = self._backends[name]
            many = getattr(backend, "fetch_many", None)  # a duck-typed backend may lack it
            wanted = [refs[k].ref for k in keys]
            task = asyncio.ensure_future(
                many(wanted) if many is not None else Backend.fetch_many(backend, wanted)
            )
            task.add_done_callback(partial(self._fetched, keys))

    def _fetched(self, keys: list[str], task: asyncio.Future[list[tuple[bool, Any]]]) -> None:
        if task.cancelled():
            outcomes: list[tuple[bool, Any]] = [
                (False, asyncio.CancelledError("fetching was cancelled"))
            ] * len(keys)
        elif (exc := task.exception()) is not None:
            outcomes = [(False, exc)] * len(keys)
        else:
            outcomes = task.result()
        with gc_paused(len(keys)):
            self._resolve(keys, outcomes)

    def _resolve(self, keys: list[str], outcomes: list[tuple[bool, Any]]) -> None:
        fetching, local = self._fetching, self.local
        for key, (ok, value) in zip(keys, outcomes, strict=True):
            fut = fetching.pop(key, None)
            if ok:
                local[key] = value
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(value)
            elif isinstance(value, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(value)

    async def fetch_then(
        self, keys: list[str], then: Callable[[BaseException | None], None]
    ) -> None:
        """Fetch ``keys``, then call ``then(None)``, or ``then(error)`` if one failed."""
        try:
            await asyncio.gather(*(self.fetch(k) for k in keys))
        except Exception as exc:
            then(BackendError(f"could not fetch the results of {', '.join(keys)}: {exc!r}"))
            return
        then(None)

    def hold(self, key: str, value: Remote, fut: asyncio.Future[Any]) -> None:
        """Resolve ``fut`` with a remote value: at once if someone awaits it,
        otherwise when someone does (:meth:`resolve_handle`)."""
        self.refs[key] = value
        if fut._callbacks:  # awaited or gathered already
            self.resolve_handle(key, fut)
            return
        self.pending[key] = fut
        if self.on_pending is not None:
            self.on_pending(fut)

    def resolve_handle(self, key: str, fut: asyncio.Future[Any] | None) -> None:
        """Fetch ``key``'s remote value and resolve its handle future."""
        fut = self.pending.pop(key, None) or fut
        if fut is None or fut.done():
            return
        handle = fut

        def resolve(done: asyncio.Future[Any]) -> None:
            if handle.done():
                return
            if done.cancelled():
                asyncio.Future.cancel(handle, "fetching the result was cancelled")
            elif (exc := done.exception()) is not None:
                handle.state = TaskState.FAILED  # type: ignore[attr-defined]  # await raises
                handle.set_exception(
                    BackendError(f"could not fetch the result of task {key!r}: {exc!r}")
                )
            else:
                handle.set_result(done.result())

        self.fetch(key).add_done_callback(resolve)

    def forget(self, key: str) -> None:
        """``key``'s value is no longer needed here: let go of the reference (a
        Dask future: the cluster frees the data) and of the local copy."""
        self.refs.pop(key, None)
        self.local.pop(key, None)

    def cancel_unfetched(self) -> None:
        """Shutdown: the handles whose value was never fetched end cancelled."""
        for key, fut in list(self.pending.items()):
            if not fut.done():
                fut.state = TaskState.CANCELLED  # type: ignore[attr-defined]
                asyncio.Future.cancel(
                    fut, f"engine shutdown: the result of {key!r} stayed on its backend unfetched"
                )
        self.pending.clear()

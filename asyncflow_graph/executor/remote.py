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
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import BackendError
from ..protocol import Backend, Remote, TaskState, Unit
from ..spec import Node, TaskKind

__all__ = ["RemoteValues"]


class RemoteValues:
    """Remote results of one executor, and the local copies fetched so far."""

    __slots__ = ("_backends", "_fetching", "local", "on_pending", "pending", "refs")

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self._backends = backends
        #: called with a handle future whose value stayed remote and that nobody
        #: awaits yet (the engine makes awaiting it fetch the value)
        self.on_pending: Callable[[asyncio.Future[Any]], None] | None = None
        self.refs: dict[str, Remote] = {}  # key -> where its value lives
        self.local: dict[str, Any] = {}  # key -> the fetched value
        #: handle futures of remote keys nobody awaited yet (resolved on demand)
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self._fetching: dict[str, asyncio.Future[Any]] = {}

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
        """The value of ``key``, fetched at most once."""
        fut = self._fetching.get(key)
        if fut is None and key in self.local:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(self.local[key])
        elif fut is None:
            fut = asyncio.ensure_future(self._fetch(key))
            self._fetching[key] = fut
        return fut

    async def _fetch(self, key: str) -> Any:
        ref = self.refs[key]
        try:
            value = await self._backends[ref.backend].fetch(ref.ref)
        finally:
            self._fetching.pop(key, None)
        self.local[key] = value
        return value

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

    def cancel_unfetched(self) -> None:
        """Shutdown: the handles whose value was never fetched end cancelled."""
        for key, fut in self.pending.items():
            if not fut.done():
                fut.state = TaskState.CANCELLED  # type: ignore[attr-defined]
                asyncio.Future.cancel(
                    fut, f"engine shutdown: the result of {key!r} stayed on its backend unfetched"
                )
        self.pending.clear()

"""The ``@cache`` pseudo-backend, and the wrapper that lets Dask workers write.

Units of cache hits are "submitted" to :class:`CacheBackend`, which reports them done
at once (on the next loop turn, as every backend does) with the value itself for
small entries, or a :class:`~asyncflow_graph.backends.base.Remote` for large ones:
the executor then loads a large value only when something needs it (a handle
awaited, a task that is not a hit), exactly as it fetches a Dask result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..protocol import CACHE_BACKEND, Backend, BackendContext, Capabilities, Outcome, Remote, Work
from .blobs import Entry, dumps, write_blob
from .hashing import checksum
from .store import Store

__all__ = ["CacheBackend", "CacheStats", "Timed", "WorkerCall"]

log = logging.getLogger("asyncflow_graph.cache")


@dataclass(slots=True)
class CacheStats:
    """Counters of one engine's cache (``flow.cache.stats()``)."""

    hits: int = 0  # tasks served from the cache
    misses: int = 0  # cached tasks that ran and were stored
    uncacheable: int = 0  # cached tasks whose arguments or result could not be stored
    bytes_written: int = 0
    bytes_read: int = 0
    time_saved: float = 0.0  # seconds the hits took when they ran


class ServedRun(Protocol):
    """What the backend needs of the run's cache (:class:`~.run.CacheRun`)."""

    counters: CacheStats
    hits: dict[str, Entry]
    store: Store

    def close(self, used: Sequence[str] = ()) -> None: ...


class CacheBackend(Backend):
    """Serves hits; never runs anything. Internal: the engine adds it when a run
    uses the cache."""

    capabilities = Capabilities(executes_code=False, fuse_chains=False)

    def __init__(self, run: ServedRun) -> None:
        super().__init__(CACHE_BACKEND)
        self._run = run
        self._pending: list[Outcome] = []
        self.used: list[str] = []  # keys of the entries served (recorded at close)

    def bind(self, context: BackendContext) -> None:
        """Attach without ``await start()``: the engine adds this backend while it
        compiles, when a first cached task appears."""
        self._context = context

    def submit(self, works: Sequence[Work]) -> None:
        stats, hits = self._run.counters, self._run.hits
        first = not self._pending
        for w in works:
            for node in w.nodes:
                entry = w.payload if type(w.payload) is Entry else hits.pop(node.key)
                stats.hits += 1
                stats.time_saved += entry.duration
                self.used.append(entry.key)
                value = entry.value if entry.loaded else Remote(CACHE_BACKEND, entry)
                if entry.loaded:
                    stats.bytes_read += entry.size
                self._pending.append((node.key, True, value))
        if first and self._pending:
            self.context.loop.call_soon(self._report)

    def _report(self) -> None:
        outcomes, self._pending = self._pending, []
        self.context.reporter.ended(outcomes)

    async def fetch(self, ref: Any) -> Any:
        entry: Entry = ref
        if entry.loaded:
            return entry.value
        value = await asyncio.to_thread(self._run.store.load, entry)
        self._run.counters.bytes_read += entry.size
        return value

    async def close(self) -> None:
        await asyncio.to_thread(self._run.close, self.used)


class Timed:
    """A cached plain function as run in a local thread pool: records how long the
    call itself took (the executor's duration starts when the pool got the work, so
    it counts the time spent queued). Equal to, and hashed as, the function it wraps,
    so a backend's per-function caches see that function."""

    __slots__ = ("func", "key", "sink")

    def __init__(self, func: Callable[..., Any], key: str, sink: dict[str, float]) -> None:
        self.func, self.key, self.sink = func, key, sink

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.sink[self.key] = time.perf_counter() - t0

    def __eq__(self, other: object) -> bool:
        return other == self.func

    def __hash__(self) -> int:
        return hash(self.func)


class WorkerCall:
    """A cached function as shipped to a Dask worker: runs it, and writes the result
    into the shared cache directory from the worker (the value never travels to the
    client for that). Picklable; the worker needs ``asyncflow_graph`` importable."""

    __slots__ = ("func", "key", "name", "root")

    def __init__(self, func: Callable[..., Any], root: Path, key: str, name: str) -> None:
        self.func, self.root, self.key, self.name = func, root, key, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        value = self.func(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
        duration = time.perf_counter() - t0
        try:
            from .code import CodeTokens

            payload = dumps(value)
            token = CodeTokens().values.token(value).hex()
            entry = Entry(self.key, self.name, len(payload), checksum(payload), token,
                          duration, time.time())  # fmt: skip
            write_blob(self.root, entry, payload)
        except Exception as exc:  # the result is good even when it cannot be stored
            log.warning("task %r: result not cached on this worker: %s", self.name, exc)
        return value

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.func, str(self.root), self.key, self.name)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.func, root, self.key, self.name = state
        self.root = Path(root)

"""One engine's use of the cache: the compiler pass, the submit gate, the writer.

* **compile time** (:meth:`CacheRun.prune`, the compiler's cache pass): a cached
  function task whose inputs' tokens are all known already (no upstream, upstream
  hits, upstream results this run has) gets its key now; a hit is pruned from the
  graph it would run in and served by the ``@cache`` backend.
* **submit time** (:meth:`CacheRun.gate`, called by the executor before a backend
  gets work): the other cached tasks — those below an upstream that had to run,
  and every executable and prompt task, whose key is its built command or prompt —
  are looked up the moment their inputs are ready. An upstream that reran with an
  equal result has an equal token, so its dependents are hits again.
* **results** (the observer hooks): a cached task that ran is pickled on the loop
  (so a value changed later is stored as it was) and written by a background
  thread; on a Dask backend the worker writes it (:class:`~.backend.WorkerCall`).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Collection, Container, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..executor.events import RunObserver
from ..protocol import CACHE_BACKEND, BackendContext, Command, Remote, Unit, Work
from ..spec import EMPTY_MAPPING, Node, TaskKind
from .backend import CacheBackend, CacheStats, Timed, WorkerCall
from .hashing import checksum
from .keys import KeyMaker
from .store import Entry, Store, dumps
from .values import Untokenizable
from .writer import Writer

__all__ = ["CacheRun"]

log = logging.getLogger("asyncflow_graph.cache")

_FETCH = b"<fetch>"  # a token that needs an upstream value fetched first


class CacheRun(RunObserver):
    """The cache of one engine (``flow.cache``). ``default``: cache function and
    executable tasks that do not say ``cache=`` themselves."""

    def __init__(self, store: Store, default: bool) -> None:
        self.store = store
        self.default = default
        self.keys = KeyMaker()
        self.values = self.keys.values
        self.writer = Writer(store)
        self.counters = CacheStats()
        self.backend = CacheBackend(self)
        self.executor: Any = None
        self.hits: dict[str, Entry] = {}  # compile-time hits, until served
        self.to_write: dict[str, str] = {}  # task key -> cache key, until done
        self.cached: set[str] = set()  # open cached task keys
        self.tokens: dict[str, bytes] = {}  # task key -> its value's token
        self.worker_keys: dict[str, str] = {}  # written by a Dask worker
        self.run_times: dict[str, float] = {}  # measured by Timed
        self._warned: set[str] = set()
        self._closed = threading.Event()

    def stats(self) -> CacheStats:
        """Hits, misses, bytes and time saved so far (a copy; ``bytes_written``
        counts what has reached the disk)."""
        return dataclasses.replace(self.counters, bytes_written=self.writer.bytes_written)

    @property
    def directory(self) -> Path:
        return self.store.root

    def attach(self, executor: Any) -> None:
        """Join ``executor``'s runs: the ``@cache`` backend, the gate, the hooks."""
        self.executor = executor
        backend = self.backend
        backend.bind(
            BackendContext(executor.engine_uid, executor.work_dir, executor.loop, executor)
        )
        executor.backends[CACHE_BACKEND] = backend
        executor.capabilities[CACHE_BACKEND] = backend.capabilities
        executor.submit_gate = self.gate
        executor.add_observer(self)

    def caches(self, node: Node) -> bool:
        wanted = node.options.cache
        if wanted is None:
            return self.default and node.kind in (TaskKind.FUNCTION, TaskKind.EXECUTABLE)
        return wanted and node.kind is not TaskKind.BLOCK

    # -- compile time ------------------------------------------------------------------

    def prune(
        self, nodes: Mapping[str, Node], order: Sequence[str], errors: Container[str]
    ) -> tuple[Collection[str], Collection[str]]:
        hits: dict[str, None] = {}
        cached: set[str] = set()
        batch: dict[str, str] = {}  # task key -> cache key, looked up together
        for key in order:
            node = nodes[key]
            if key in errors or not self.caches(node):
                continue
            cached.add(key)
            if node.kind is not TaskKind.FUNCTION:
                continue  # keyed by the command/prompt its builder makes
            if batch and any(d in batch for d in node.deps):
                self._look_up(batch, hits)  # its key needs theirs: decide them first
            ck = self._compile_time_key(node)
            if ck is None:
                continue  # an upstream still has to run: looked up at submit
            if ck == "":
                cached.discard(key)
            else:
                batch[key] = ck
        self._look_up(batch, hits)
        self.cached |= cached
        return hits, cached

    def _compile_time_key(self, node: Node) -> str | None:
        """The key when every upstream token is known now; None when one is not,
        "" when the task cannot be cached."""
        try:
            refs = self._refs(node, [])
        except Untokenizable as exc:
            self._uncacheable(node, f"an upstream result cannot be hashed: {exc}")
            return ""
        if refs is None:
            return None
        return self._function_key(node, refs) or ""

    def _look_up(self, batch: dict[str, str], hits: dict[str, None]) -> None:
        if not batch:
            return
        found = self.store.lookup_many(list(batch.values()))
        for key, ck in batch.items():
            entry = found.get(ck)
            if entry is None:
                self.to_write[key] = ck
            else:
                hits[key] = None
                self.hits[key] = entry
                self.tokens[key] = bytes.fromhex(entry.token)
        batch.clear()

    def _refs(self, node: Node, fetch: list[str]) -> dict[str, bytes] | None:
        """Tokens of ``node``'s upstream results, or None when one is unknown (not
        done yet, or to be fetched first: those go to ``fetch``)."""
        refs: dict[str, bytes] = {}
        for d in node.deps:
            token = self._dep_token(d)
            if token is _FETCH:
                fetch.append(d)
            elif token is None:
                return None
            else:
                refs[d] = token
        return None if fetch else refs

    def _dep_token(self, key: str) -> bytes | None:
        token = self.tokens.get(key)
        if token is not None:
            return token
        ex = self.executor
        if key not in ex.state.values:
            return None
        value = ex.state.values[key]
        if type(value) is Remote:
            if key in ex.remote.local:
                value = ex.remote.local[key]
            elif key in self.worker_keys:  # a worker wrote it: its token is in the header
                entry = self.store.lookup(self.worker_keys[key])
                if entry is None:
                    return _FETCH
                token = self.tokens[key] = bytes.fromhex(entry.token)
                return token
            else:
                return _FETCH
        token = self.tokens[key] = self.values.token(value)  # may raise Untokenizable
        return token

    def _function_key(self, node: Node, refs: Mapping[str, bytes]) -> str | None:
        try:
            return self.keys.function(node, refs)
        except Untokenizable as exc:
            self._uncacheable(node, f"its arguments cannot be hashed: {exc}")
            return None

    def _uncacheable(self, node: Node, why: str) -> None:
        self.counters.uncacheable += 1
        self.cached.discard(node.key)
        if node.name not in self._warned:
            self._warned.add(node.name)
            log.warning("task %r is not cached: %s", node.name, why)

    # -- submit time -------------------------------------------------------------------

    def gate(self, name: str, works: list[Work]) -> list[Work]:
        """Works to send to backend ``name``: hits leave for ``@cache``, results of
        work bound for a Dask worker are written there."""
        if name == CACHE_BACKEND:
            return works
        cached = self.cached
        out: list[Work] | None = None
        hits: list[Work] = []
        for i, w in enumerate(works):
            if w.unit.keys[0] not in cached or len(w.nodes) != 1:
                if out is not None:
                    out.append(w)
                continue
            if out is None:
                out = works[:i]
            gated = self._gated(name, w, hits)
            if gated is not None:
                out.append(gated)
        if hits:
            self.executor.submit(CACHE_BACKEND, hits)
        return works if out is None else out

    def _gated(self, name: str, w: Work, hits: list[Work]) -> Work | None:
        node = w.nodes[0]
        key = node.key
        ck = self.to_write.get(key)
        if ck is None:
            fetch: list[str] = []
            try:
                ck = self._submit_key(name, w, fetch)
            except Untokenizable as exc:
                self._uncacheable(node, f"an upstream result cannot be hashed: {exc}")
                return w
            if fetch:
                self.executor.spawn(self._after_fetch(name, w, fetch))
                return None
            if ck is None:
                return w
            entry = self.store.lookup(ck)
            if entry is not None:
                self.tokens[key] = bytes.fromhex(entry.token)
                hits.append(Work(Unit(CACHE_BACKEND, (key,), ()), w.nodes, EMPTY_MAPPING, entry))
                return None
            self.to_write[key] = ck
        return self._shipped(name, w, ck)

    def _shipped(self, name: str, w: Work, ck: str) -> Work:
        """``w`` as its backend gets it: a Dask worker writes the result itself; a
        plain function on a local pool times its own call."""
        node = w.nodes[0]
        if node.kind is not TaskKind.FUNCTION:
            return w
        caps = self.executor.capabilities[name]
        func: Any
        if caps.remote and caps.needs_pickle:
            self.worker_keys[node.key] = ck
            func = WorkerCall(node.func, self.store.root, ck, node.name)
        elif self._thread_pool(name) and not inspect.iscoroutinefunction(node.func):
            func = Timed(node.func, node.key, self.run_times)
        else:
            return w
        return Work(w.unit, (dataclasses.replace(node, func=func),), w.inputs, w.payload)

    def _thread_pool(self, name: str) -> bool:
        from ..backends.local import LocalExecutionBackend

        backend = self.executor.backends[name]
        return isinstance(backend, LocalExecutionBackend) and not backend.capabilities.needs_pickle

    def _submit_key(self, name: str, w: Work, fetch: list[str]) -> str | None:
        node = w.nodes[0]
        if node.kind is TaskKind.PROMPT:
            return self.keys.prompt(node, str(w.payload), self._identity(name, node))
        refs = self._refs(node, fetch)
        if refs is None:
            return None
        if node.kind is TaskKind.EXECUTABLE and isinstance(w.payload, Command):
            return self.keys.executable(node, w.payload, refs)
        return self._function_key(node, refs)

    def _identity(self, name: str, node: Node) -> Any:
        backend = self.executor.backends[name]
        identity = getattr(backend, "cache_identity", None)
        if identity is not None:
            return identity(node.options)
        opts = node.options
        return (type(backend).__qualname__, name, opts.max_tokens, opts.temperature,
                opts.stop, opts.system)  # fmt: skip

    async def _after_fetch(self, name: str, w: Work, keys: list[str]) -> None:
        """An upstream value stayed remote (not cached): fetch it to hash it."""
        ex = self.executor
        try:
            for k in keys:
                await ex.remote.fetch(k)
        except Exception as exc:
            self._uncacheable(w.nodes[0], f"an upstream result could not be fetched: {exc!r}")
        if ex.state.is_open(w.key) and w.key not in ex.inflight.works:
            ex.submit(name, [w])

    # -- results -----------------------------------------------------------------------

    def on_done(self, key: str, value: Any) -> None:
        ck = self.to_write.pop(key, None)
        if ck is not None:
            self._store_result(key, ck, value)

    def on_done_many(self, done: Sequence[tuple[str, Any]]) -> None:
        to_write = self.to_write
        if to_write:
            for key, value in done:
                ck = to_write.pop(key, None)
                if ck is not None:
                    self._store_result(key, ck, value)

    def on_failed(self, key: str, exc: BaseException) -> None:
        self._forget(key)

    def on_cancelled(self, key: str, msg: str | None) -> None:
        self._forget(key)

    def _forget(self, key: str) -> None:
        self.to_write.pop(key, None)
        self.hits.pop(key, None)
        self.cached.discard(key)

    def _store_result(self, key: str, ck: str, value: Any) -> None:
        ex = self.executor
        node = ex.state.nodes[key]
        self.cached.discard(key)
        if type(value) is Remote:
            if self.worker_keys.get(key) == ck:
                self.counters.misses += 1  # the worker wrote it
            else:
                ex.spawn(self._fetch_and_store(key, ck))
            return
        try:
            payload = dumps(value)
            token = self.values.token(value)
        except Exception as exc:
            self._uncacheable(node, f"its result cannot be pickled ({type(exc).__name__}: {exc})")
            return
        self.tokens[key] = token
        duration = self.run_times.pop(key, None)
        if duration is None:
            duration = ex.state.durations.get(key, 0.0)
        entry = Entry(ck, node.name, len(payload), checksum(payload), token.hex(), duration,
                      time.time())  # fmt: skip
        self.writer.put(entry, payload)
        self.counters.misses += 1

    async def _fetch_and_store(self, key: str, ck: str) -> None:
        try:
            value = await self.executor.remote.fetch(key)
        except Exception as exc:
            log.warning("result of task %r not cached: could not fetch it: %r", key, exc)
            return
        self._store_result(key, ck, value)

    # -- the end -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every result so far is on disk."""
        return self.writer.flush(timeout)

    def close(self, used: Sequence[str] = ()) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.writer.close()
        try:
            self.store.touch(used)
        except Exception as exc:  # bookkeeping only
            log.warning("could not record cache hits in %s: %s", self.store.root, exc)
        self.store.close()

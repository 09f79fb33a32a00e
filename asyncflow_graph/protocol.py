"""The backend contract: the one leaf module that compiler, executor and backends
all import (backends import neither the compiler nor the executor).

The executor hands a backend :class:`Work` items — each a fused unit of nodes whose
inputs are resolved — and the backend answers through the :class:`Reporter` it got
at start, always on the event-loop thread (:class:`ThreadSafeReporter` wraps it for
code that reports from other threads). ``submit`` never blocks: it schedules the
work and returns. Everything a backend needs to know about a task is in the frozen
:class:`~asyncflow_graph.spec.Node`; nothing here is shared mutable state.

See ``docs/backends.md`` for a complete third-party backend and
:mod:`asyncflow_graph.testing` for the conformance suite every backend passes.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .spec import Node

__all__ = [
    "CACHE_BACKEND",
    "ENGINE_BACKEND",
    "Backend",
    "BackendContext",
    "Capabilities",
    "Coarsening",
    "Command",
    "Outcome",
    "Remote",
    "Reporter",
    "TaskState",
    "ThreadSafeReporter",
    "Unit",
    "Work",
    "function_id",
]


class TaskState(StrEnum):
    """The state of one task, as futures (``handle.state``), the executor, telemetry
    and drawings all name it. A str enum: ``handle.state == "DONE"`` holds, as in
    AsyncFlow."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def ended(self) -> bool:
        return self in _ENDED

    def __repr__(self) -> str:
        # Printed inside lists and dicts as AsyncFlow's plain strings are: 'DONE'.
        return repr(self.value)


_ENDED = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


#: Pseudo-backend of block nodes: they run on the engine's own event loop.
ENGINE_BACKEND = "@engine"
#: Pseudo-backend of tasks served from the result cache (nothing runs).
CACHE_BACKEND = "@cache"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; the compiler validates and plans against it."""

    supports_prompts: bool = False
    #: Work leaves this process (processes, remote clusters): callables must pickle.
    needs_pickle: bool = False
    remote: bool = False
    #: False for dry-run backends: builders of executables/prompts are not run.
    executes_code: bool = True
    max_concurrency: int | None = None
    #: False when the backend takes one task per submission (AsyncFlow adapters).
    fuse_chains: bool = True
    #: True when the backend runs a DAG of function tasks as one submission (Dask: one
    #: graph, one round trip); the compiler then merges each partition's function
    #: tasks into one graph unit.
    graph_units: bool = False
    #: True when the backend applies ``retries=`` itself (Dask's own retries): the
    #: executor then does not resubmit failed tasks on it.
    handles_retries: bool = False
    #: the backend's class name, for error messages ("" when it does not say)
    backend_type: str = ""


class Unit(NamedTuple):
    """One submission: nodes on one backend run as one piece of work
    (a NamedTuple: immutable and cheap, one per submission).

    A chain unit (``graph=False``, what fusion makes): only the first node has
    inputs from outside the unit, and each later node depends on exactly the node
    before it. A graph unit (``graph=True``, for backends with ``graph_units``):
    ``keys`` are in topological order, each node's dependencies are earlier keys or
    ``inputs``, and ``inputs`` are every dependency from outside the unit.

    ``groups`` (graph units of a backend that gave :class:`Coarsening` hints): the
    sizes of consecutive runs of ``keys``, each run one remote task (a fused chain
    or a chunk of independent tasks, run in order); empty: one remote task per key.
    A unit rebuilt from part of a unit (a retry, a split) has none."""

    backend: str
    keys: tuple[str, ...]
    inputs: tuple[str, ...]
    graph: bool = False
    groups: tuple[int, ...] = ()

    @property
    def head(self) -> str:
        return self.keys[0]


#: ``(key, ok, value)``: ``value`` is the result when ``ok``, else the exception
Outcome = tuple[str, bool, Any]


class Reporter(Protocol):
    """How a backend reports task outcomes (call on the event-loop thread; from
    another thread, use :class:`ThreadSafeReporter`)."""

    def running(self, key: str) -> None: ...
    def done(self, key: str, value: Any) -> None: ...
    def failed(self, key: str, exc: BaseException) -> None: ...
    def cancelled(self, key: str, msg: str | None = None) -> None: ...
    def ended(self, outcomes: Iterable[Outcome]) -> None:
        """Several outcomes known together (as ``done``/``failed`` in order); the
        work they make ready is dispatched once, after all of them."""


@dataclass(frozen=True, slots=True)
class Command:
    """A command ready to run: an argv list (exec) or a shell string."""

    argv: tuple[str, ...] | None
    shell: str | None
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    stdout_path: str | None = None  # set when capture_stdio=True
    stderr_path: str | None = None

    @property
    def text(self) -> str:
        import shlex

        return self.shell if self.shell is not None else shlex.join(self.argv or ())


class Work(NamedTuple):
    """One unit ready to run (a NamedTuple: immutable and cheap to build, one per
    submission on the hot path). ``inputs`` holds the values of ``unit.inputs``;
    ``payload`` is the built :class:`Command` of an executable task or the prompt
    text of a prompt task (None for function tasks)."""

    unit: Unit
    nodes: tuple[Node, ...]
    inputs: Mapping[str, Any]
    payload: Any = None

    @property
    def key(self) -> str:
        return self.unit.keys[0]


class Remote:
    """A result that stays where it was computed (e.g. a Dask future on the cluster).

    A backend reports ``done(key, Remote(self.name, ref))`` to keep a value remote:
    the executor hands it back unchanged to later work on the same backend and asks
    ``backend.fetch(ref)`` only when the value is needed here (a handle awaited, a
    task on another backend, a builder or a block body)."""

    __slots__ = ("backend", "ref")

    def __init__(self, backend: str, ref: Any) -> None:
        self.backend = backend
        self.ref = ref

    def __repr__(self) -> str:
        return f"Remote({self.backend!r}, {self.ref!r})"


@dataclass(frozen=True, slots=True)
class Coarsening:
    """What a backend whose remote scheduler charges per task (Dask: about a
    millisecond) tells the compiler, so it can group small tasks into fewer remote
    tasks (:mod:`asyncflow_graph.compiler.coarsen`). A snapshot, taken per compile."""

    #: tasks the backend runs at once (worker threads of the cluster)
    workers: int
    #: :func:`function_id` -> measured seconds per call
    durations: Mapping[str, float]
    #: :func:`function_id` -> measured bytes of one result
    sizes: Mapping[str, float]
    #: seconds of work one remote task (chunk or fused chain) aims at: no task waits
    #: longer than this behind others of its chunk
    target: float = 0.1
    #: a task estimated to take this long or more is never grouped
    long: float = 0.1
    #: a task whose results are this large or larger is never grouped (a dependent
    #: elsewhere would fetch the whole chunk)
    max_result_bytes: float = 1_000_000
    max_tasks: int = 10_000
    #: seconds the remote scheduler costs per task (Dask: a few milliseconds)
    overhead: float = 0.005
    #: seconds of work one chunk holds at most, however large its level
    max_chunk: float = 1.0


def function_id(func: Any) -> str:
    """The name durations are measured under: module, qualified name and first line
    of the code (two lambdas of one scope differ), the same in every engine."""
    while callable(getattr(func, "func", None)):  # functools.partial
        func = func.func
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin, or an object with __call__
        name = getattr(func, "__qualname__", None) or type(func).__qualname__
        return f"{getattr(func, '__module__', None) or type(func).__module__}.{name}"
    name = getattr(func, "__qualname__", code.co_name)
    return f"{getattr(func, '__module__', None)}.{name}:{code.co_firstlineno}"


@dataclass(frozen=True, slots=True)
class BackendContext:
    engine_uid: str
    work_dir: Path  # {engine work_dir}/{engine uid}: owned by the engine
    loop: asyncio.AbstractEventLoop
    reporter: Reporter


class Backend(ABC):
    """Base class of native backends.

    Subclasses set ``capabilities`` and implement ``submit``; ``start``, ``cancel``
    and ``close`` have safe defaults. Backends are awaitable (``await Backend()``
    returns the backend, as AsyncFlow's are) and async context managers."""

    capabilities: Capabilities = Capabilities()
    name: str

    def __init__(self, name: str = "default") -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"backend name must be a non-empty str, got {name!r}")
        self.name = name
        self._context: BackendContext | None = None

    @property
    def context(self) -> BackendContext:
        if self._context is None:
            raise RuntimeError(f"backend {self.name!r} is not attached to an engine")
        return self._context

    async def start(self, context: BackendContext) -> None:
        """Attach to an engine. Called once, on the engine's loop."""
        self._context = context

    @abstractmethod
    def submit(self, works: Sequence[Work]) -> None:
        """Schedule ``works`` (all ready now) and return at once."""

    async def cancel(self, work: Work) -> None:  # noqa: B027 - optional hook
        """Stop ``work`` if it is running; report ``cancelled`` for what stopped.
        When it returns, the backend starts nothing of ``work`` any more (a remote
        backend waits for its scheduler to confirm)."""

    async def cancel_tail(self, work: Work, key: str) -> None:  # noqa: B027 - optional hook
        """``work`` is a chain that runs now, and ``key`` and the keys after it were
        cancelled: start none of them (the keys before ``key`` run on and report as
        usual; report nothing for the stopped ones). By default nothing is done: the
        bodies after ``key`` still run, and their results are dropped."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release every resource; called once at engine shutdown."""

    async def fetch(self, ref: Any) -> Any:
        """The value behind a :class:`Remote` this backend reported."""
        raise NotImplementedError(f"backend {self.name!r} reported a Remote but cannot fetch it")

    async def fetch_many(self, refs: Sequence[Any]) -> list[tuple[bool, Any]]:
        """The values behind several :class:`Remote` refs, as ``(True, value)`` or
        ``(False, exception)`` per ref, in order (the executor asks for the refs of
        one loop turn together). By default, :meth:`fetch` for each, concurrently."""

        async def one(ref: Any) -> tuple[bool, Any]:
            try:
                return True, await self.fetch(ref)
            except Exception as exc:
                return False, exc

        return list(await asyncio.gather(*(one(r) for r in refs)))

    def coarsening(self) -> Coarsening | None:
        """Hints for grouping small tasks into fewer submissions of this backend's
        graph units (None: one remote task per task). Asked at every compile."""
        return None

    def state(self) -> str:
        return "RUNNING" if self._context is not None else "INITIALIZED"

    # AsyncFlow-style conveniences -------------------------------------------------

    def __await__(self) -> Generator[Any, None, Backend]:
        if False:  # pragma: no cover - makes this a generator
            yield
        return self

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class ThreadSafeReporter:
    """A :class:`Reporter` that may be called from any thread: each report is
    handed to the event loop (``call_soon_threadsafe``) and delivered there, in
    the order the reports were made. For backends whose completions arrive on
    their own threads (a client library's callback thread, a polling thread)."""

    __slots__ = ("_loop", "_reporter")

    def __init__(self, reporter: Reporter, loop: asyncio.AbstractEventLoop) -> None:
        self._reporter = reporter
        self._loop = loop

    def running(self, key: str) -> None:
        self._loop.call_soon_threadsafe(self._reporter.running, key)

    def done(self, key: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._reporter.done, key, value)

    def failed(self, key: str, exc: BaseException) -> None:
        self._loop.call_soon_threadsafe(self._reporter.failed, key, exc)

    def cancelled(self, key: str, msg: str | None = None) -> None:
        self._loop.call_soon_threadsafe(self._reporter.cancelled, key, msg)

    def ended(self, outcomes: Iterable[Outcome]) -> None:
        # Materialized here: a generator must not be consumed on another thread.
        self._loop.call_soon_threadsafe(self._reporter.ended, list(outcomes))

"""The native backend protocol: one small base class.

The executor hands a backend :class:`Work` items — each a fused unit of nodes whose
inputs are resolved — and the backend answers through the :class:`Reporter` it got
at start, always on the event-loop thread. ``submit`` never blocks: it schedules the
work and returns. Everything a backend needs to know about a task is in the frozen
:class:`~asyncflow_graph.spec.Node`; nothing here is shared mutable state.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..compiler.plan import Capabilities, Unit
from ..spec import Node

__all__ = ["Backend", "BackendContext", "Command", "Remote", "Reporter", "Work"]


#: ``(key, ok, value)``: ``value`` is the result when ``ok``, else the exception
Outcome = tuple[str, bool, Any]


class Reporter(Protocol):
    """How a backend reports task outcomes (call on the event-loop thread)."""

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

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release every resource; called once at engine shutdown."""

    async def fetch(self, ref: Any) -> Any:
        """The value behind a :class:`Remote` this backend reported."""
        raise NotImplementedError(f"backend {self.name!r} reported a Remote but cannot fetch it")

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

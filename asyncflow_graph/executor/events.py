"""Run observers: how telemetry, the JSONL log and progress bars see a run.

The executor calls every attached :class:`RunObserver` at each lifecycle step, on the
event-loop thread, in this order per key: ``on_plan`` (the key was compiled),
``on_submitted`` (its unit went to a backend; a retried unit is submitted again),
``on_running`` (the backend started it; not every backend reports this), then exactly
one of ``on_done`` / ``on_failed`` / ``on_cancelled``. A key that ends without running
(a failed dependency, a compile-time error, a cancel) gets only the ending call. Keys
a backend reports done together come as one ``on_done_many`` call (by default, a loop
over ``on_done``), before any of their dependents is submitted.

Only the hooks an observer overrides are called: the executor looks them up once,
when the observer is attached. With no observer attached (or none overriding a hook)
the executor pays one truthiness test per step, so observability costs nothing when
it is off, and an observer that needs no per-key start pays nothing for
``on_running``: what it needs of the run's timing it reads from the
:class:`RunView` given to ``on_attach``. Observers must not raise and must not
block: the executor logs and ignores an exception from one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..compiler.plan import Plan, Unit
from ..protocol import TaskState

__all__ = ["HOOKS", "ObservedEngine", "RunObserver", "RunView", "overridden"]

#: the per-step hooks, in lifecycle order
HOOKS = ("on_plan", "on_submitted", "on_running", "on_done", "on_failed", "on_cancelled")


class RunView(Protocol):
    """A read-only window on the executor's state, for observers."""

    @property
    def durations(self) -> Mapping[str, float]:
        """Seconds from running to the end, per key that ran; a key's entry is
        there before its ending hook is called."""

    def live_counts(self) -> dict[str, tuple[int, int]]:
        """``(queued, running)`` keys per backend now. Safe to call from another
        thread (a metric reader's): it reads snapshots."""

    def outcome(self, key: str) -> TaskState | None:
        """``key``'s state now (None: not compiled yet)."""

    def error(self, key: str) -> BaseException | None:
        """The exception ``key`` failed with, if it failed."""


class ObservedEngine(Protocol):
    """What telemetry, event logs and progress bars need of an engine."""

    @property
    def uid(self) -> str: ...
    @property
    def loop(self) -> Any: ...
    @property
    def backends(self) -> Mapping[str, Any]: ...
    def add_observer(self, observer: RunObserver) -> None: ...
    def remove_observer(self, observer: RunObserver) -> None: ...
    def add_listener(self, listener: Any) -> None:
        """An :class:`~asyncflow_graph.listeners.EngineListener`."""

    def remove_listener(self, listener: Any) -> None: ...


class RunObserver:
    """Base class with no-op hooks: override the ones you need."""

    def on_attach(self, run: RunView) -> None:
        """Called once when the observer is attached to an engine."""

    def on_plan(self, plan: Plan) -> None:
        """A compiled batch was added (``plan.nodes`` are the new keys)."""

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        """``units`` were handed to ``backend`` (blocks: to ``"@engine"``)."""

    def on_running(self, key: str) -> None:
        """The backend started ``key``."""

    def on_done(self, key: str, value: Any) -> None:
        """``key`` produced ``value``."""

    def on_done_many(self, done: Sequence[tuple[str, Any]]) -> None:
        """``(key, value)`` pairs a backend reported done together, in order: the
        same as ``on_done`` for each pair. Called instead of ``on_done`` for batches.
        Override ``on_done``, this, or both (when a batch costs less as a whole): the
        executor builds the one you leave out from the other."""
        for key, value in done:
            self.on_done(key, value)

    def on_failed(self, key: str, exc: BaseException) -> None:
        """``key`` failed with ``exc`` (its own error or a DependencyFailureError)."""

    def on_cancelled(self, key: str, msg: str | None) -> None:
        """``key`` was cancelled (by the user, a dependency, or shutdown)."""


def overridden(observer: RunObserver, hook: str) -> bool:
    """Whether ``observer``'s class (or the instance) replaces the no-op ``hook``."""
    return hook in vars(observer) or getattr(type(observer), hook) is not getattr(RunObserver, hook)

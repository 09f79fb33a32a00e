"""Run observers: how telemetry, the JSONL log and progress bars see a run.

The executor calls every attached :class:`RunObserver` at each lifecycle step, on the
event-loop thread, in this order per key: ``on_plan`` (the key was compiled),
``on_submitted`` (its unit went to a backend; a retried unit is submitted again),
``on_running`` (the backend started it; not every backend reports this), then exactly
one of ``on_done`` / ``on_failed`` / ``on_cancelled``. A key that ends without running
(a failed dependency, a compile-time error, a cancel) gets only the ending call.

With no observer attached the executor pays one truthiness test per step, so
observability costs nothing when it is off. Observers must not raise and must not
block: the executor logs and ignores an exception from one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..compiler.plan import Plan, Unit

__all__ = ["RunObserver"]


class RunObserver:
    """Base class with no-op hooks: override the ones you need."""

    def on_plan(self, plan: Plan) -> None:
        """A compiled batch was added (``plan.nodes`` are the new keys)."""

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        """``units`` were handed to ``backend`` (blocks: to ``"@engine"``)."""

    def on_running(self, key: str) -> None:
        """The backend started ``key``."""

    def on_done(self, key: str, value: Any) -> None:
        """``key`` produced ``value``."""

    def on_failed(self, key: str, exc: BaseException) -> None:
        """``key`` failed with ``exc`` (its own error or a DependencyFailureError)."""

    def on_cancelled(self, key: str, msg: str | None) -> None:
        """``key`` was cancelled (by the user, a dependency, or shutdown)."""

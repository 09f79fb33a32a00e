"""The names and records telemetry is built from: RHAPSODY's event types, the
event record, and per-backend task counts (shared by the manager and the run
observer, so neither imports the other's module for them)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SESSION_BACKEND",
    "SESSION_ENDED",
    "SESSION_STARTED",
    "TASK_CANCELED",
    "TASK_COMPLETED",
    "TASK_CREATED",
    "TASK_FAILED",
    "TASK_QUEUED",
    "TASK_RESOLVED",
    "TASK_STARTED",
    "TASK_SUBMITTED",
    "BackendStats",
    "TelemetryEvent",
]

SESSION_STARTED = "SessionStarted"
SESSION_ENDED = "SessionEnded"
TASK_CREATED = "TaskCreated"
TASK_RESOLVED = "asyncflow.TaskResolved"
TASK_QUEUED = "TaskQueued"
TASK_SUBMITTED = "TaskSubmitted"
TASK_STARTED = "TaskStarted"
TASK_COMPLETED = "TaskCompleted"
TASK_FAILED = "TaskFailed"
TASK_CANCELED = "TaskCanceled"

#: the backend name RHAPSODY gives session-level events
SESSION_BACKEND = "asyncflow"


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """One telemetry event, with RHAPSODY's ``BaseEvent`` fields. Terminal task
    events carry ``duration_seconds`` (running -> end; 0.0 when the backend never
    reported running), ``TaskFailed`` also ``error_type``."""

    event_id: str
    event_type: str
    event_time: float
    emit_time: float
    session_id: str
    backend: str
    task_id: str | None = None
    node_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float | None = None
    error_type: str | None = None


class BackendStats:
    """Task counts of one backend. The executor's hooks bump the cumulative ints
    and append durations (cheap); the duration aggregates are folded in by
    :meth:`absorb`, and ``queued``, ``running`` and ``started`` are live counts the
    observer's ``refresh()`` computes, when metrics or ``summary()`` ask, so that
    the hot path does not keep them."""

    __slots__ = (
        "_lock",
        "canceled",
        "completed",
        "created",
        "dur_max",
        "dur_min",
        "dur_n",
        "dur_sum",
        "failed",
        "name",
        "queued",
        "recent",
        "running",
        "started",
        "submitted",
        "unrecorded",
    )

    def __init__(self, name: str = "") -> None:
        self.name = name
        #: durations of ended keys not folded in yet (deque: a metric reader's thread
        #: may drain it while the loop appends)
        self.recent: deque[float] = deque()
        #: folded in, not yet recorded in the OTel histogram
        self.unrecorded: list[float] = []
        self.created = self.submitted = self.started = 0
        self.completed = self.failed = self.canceled = 0
        self.queued = self.running = 0  # live: handed to the backend / running now
        self.dur_n = 0
        self.dur_sum = self.dur_max = 0.0
        self.dur_min = float("inf")
        self._lock = threading.Lock()  # absorb() runs on the loop and reader threads

    def absorb(self) -> None:
        """Fold the pending durations into the aggregates."""
        with self._lock:
            pending = self.recent
            values = [pending.popleft() for _ in range(len(pending))]
            if values:
                self.dur_n += len(values)
                self.dur_sum += sum(values)
                self.dur_max = max(self.dur_max, *values)
                self.dur_min = min(self.dur_min, *values)
                self.unrecorded.extend(values)

    def take_unrecorded(self) -> list[float]:
        """The absorbed durations not yet in the histogram (each returned once)."""
        with self._lock:
            values, self.unrecorded = self.unrecorded, []
        return values

    @property
    def ran(self) -> int:
        """Keys that ended after running (one duration each, once absorbed)."""
        return self.dur_n

    @property
    def ended(self) -> int:
        return self.completed + self.failed + self.canceled

    @property
    def pending(self) -> int:
        """Created, not yet handed to the backend (waiting for dependencies)."""
        return max(0, self.created - self.ended - self.queued - self.running)

    def by_state(self) -> dict[str, int]:
        return {
            "pending": self.pending,
            "queued": self.queued,
            "running": self.running,
            "done": self.completed,
            "failed": self.failed,
            "cancelled": self.canceled,
        }

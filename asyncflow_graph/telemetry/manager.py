"""AsyncFlow's (RHAPSODY's) telemetry manager interface, written for this engine.

``start_telemetry()`` returns a :class:`TelemetryManager`: ``subscribe(callback)``,
``emit(event)``, ``summary()``, ``await stop()``, ``session_id``, ``span_scope()``,
``read_metrics()``, ``read_traces()``. Events are :class:`TelemetryEvent` values with
RHAPSODY's fields (``event_type``, ``task_id``, ``session_id`` = the engine uid,
``backend``, ``attributes`` ...) and AsyncFlow's names (``TaskCreated``,
``asyncflow.TaskResolved``, ``TaskSubmitted``, ``TaskStarted``, ``TaskCompleted`` ...).

Why not reuse ``rhapsody-py``: its manager builds one event object (with a uuid4) per
lifecycle step of every task and routes everything, spans included, through an asyncio
queue; that is several times our whole per-task budget. Here lifecycle events are built
only while someone is subscribed, and spans and metrics come straight from the
executor's hooks (see ``otel.py``). It would also pull RHAPSODY's package into an
optional extra for a few hundred lines of interface. This module imports no
OpenTelemetry: the manager only holds the OTel session object ``otel.py`` made.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..executor.events import ObservedEngine
    from ..spec import Node
    from .observer import StartedEvents, TelemetryObserver

__all__ = [
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
    "TelemetryManager",
]

from .names import (
    SESSION_BACKEND,
    SESSION_ENDED,
    SESSION_STARTED,
    TASK_CANCELED,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_FAILED,
    TASK_QUEUED,
    TASK_RESOLVED,
    TASK_STARTED,
    TASK_SUBMITTED,
    BackendStats,
    TelemetryEvent,
)

log = logging.getLogger("asyncflow_graph.telemetry")


class TelemetrySession(Protocol):
    """What the manager needs from the OpenTelemetry side (``otel.OTelSession``)."""

    @property
    def observer(self) -> TelemetryObserver: ...
    @property
    def stats(self) -> Mapping[str, BackendStats]: ...

    def span_scope(
        self, name: str, attributes: Mapping[str, Any] | None
    ) -> AbstractContextManager[Any]: ...
    def read_metrics(self) -> Any: ...
    def read_traces(self) -> tuple[Any, ...]: ...
    def workflow_entered(self, wid: str) -> None: ...
    def workflow_exited(self, wid: str) -> None: ...
    def finish(self) -> None: ...
    def shutdown(self) -> None: ...


class TelemetryManager:
    """AsyncFlow-compatible handle on one engine's telemetry (see module doc)."""

    def __init__(self, engine: ObservedEngine, session: TelemetrySession) -> None:
        self._engine = engine
        self._session = session
        self.session_id: str = engine.uid
        self._subscribers: list[Callable[[TelemetryEvent], Any]] = []
        self._queue: list[TelemetryEvent] = []
        self._delivery_scheduled = False
        self._async_deliveries: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        self._closers: list[Callable[[], Any]] = []
        self._finals: list[Callable[[], Any]] = []  # run after the last event
        self._started_at = time.time()
        self._stopped_at: float | None = None
        self._last_summary: dict[str, Any] | None = None
        #: what telemetry could not do (e.g. its event log hit a full disk)
        self.degraded: list[str] = []
        self.checkpoint_file: str | None = None
        self._started_events: StartedEvents | None = None
        self._stopping: asyncio.Future[None] | None = None
        engine.add_observer(session.observer)
        engine.add_listener(self)  # workflow spans follow workflow_scope(); shutdown stops
        self.emit(self.event(SESSION_STARTED, backend=SESSION_BACKEND))

    # -- AsyncFlow / RHAPSODY interface ---------------------------------------------

    def subscribe(self, callback: Callable[[TelemetryEvent], Any]) -> None:
        """Call ``callback(event)`` for every later event (sync or async callback).

        Events are delivered in order at the end of the loop turn that produced
        them, never from inside the executor; an exception in a callback is logged.
        Lifecycle events are only built while someone is subscribed."""
        self._subscribers.append(callback)
        if self._started_events is None:
            from .observer import StartedEvents  # runtime import: observer imports us

            self._session.observer.events = self._task_event
            self._started_events = StartedEvents(self._session.observer)
            self._engine.add_observer(self._started_events)

    def unsubscribe(self, callback: Callable[[TelemetryEvent], Any]) -> None:
        self._subscribers = [c for c in self._subscribers if c != callback]  # bound methods: ==
        if not self._subscribers:
            self._detach_started_events()

    def _detach_started_events(self) -> None:
        if self._started_events is not None:
            self._session.observer.events = None
            self._engine.remove_observer(self._started_events)
            self._started_events = None

    def emit(self, event: TelemetryEvent) -> None:
        """Publish ``event`` (a lifecycle event or your own, see :meth:`event`)."""
        if self._stopped_at is None:
            self._enqueue(event)

    def event(
        self,
        event_type: str,
        *,
        task_id: str | None = None,
        backend: str = SESSION_BACKEND,
        attributes: dict[str, Any] | None = None,
        event_time: float | None = None,
        **extra: Any,
    ) -> TelemetryEvent:
        """Build an event of this session (``event_type`` may be your own name,
        e.g. ``"campaign.ResourceAssigned"``)."""
        now = time.time()
        return TelemetryEvent(
            event_id=f"{self._id_prefix}{next(self._ids):x}",
            event_type=event_type,
            event_time=now if event_time is None else event_time,
            emit_time=now,
            session_id=self.session_id,
            backend=backend,
            task_id=task_id,
            attributes=attributes if attributes is not None else {},
            **extra,
        )

    def summary(self) -> dict[str, Any]:
        """Plain-dict summary: task counts, durations (running -> end), per backend."""
        if self._last_summary is not None:
            return self._last_summary
        self._session.observer.refresh()
        stats = dict(self._session.stats)
        total = BackendStats()
        for s in stats.values():
            for name in _COUNTS:
                setattr(total, name, getattr(total, name) + getattr(s, name))
            total.dur_n += s.dur_n
            total.dur_sum += s.dur_sum
            total.dur_max = max(total.dur_max, s.dur_max)
            total.dur_min = min(total.dur_min, s.dur_min)
        end = self._stopped_at if self._stopped_at is not None else time.time()
        return {
            "session_id": self.session_id,
            "duration_seconds": round(end - self._started_at, 6),
            "tasks": _counts(total),
            "duration": _durations(total),
            "backends": {name: _counts(s) for name, s in stats.items()},
            "degraded": list(self.degraded),
        }

    def degrade(self, reason: str) -> None:
        """Record that part of telemetry stopped working (shown by ``summary()``)."""
        self.degraded.append(reason)

    async def stop(self) -> None:
        """End the session: flush spans and metrics, close the event log and the
        progress bar, detach from the engine. Safe to call twice, and concurrently
        (the engine's shutdown calls it too)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        self._engine.remove_listener(self)
        self._engine.remove_observer(self._session.observer)
        self._detach_started_events()
        self._session.finish()
        for close in self._closers:
            try:
                close()
            except Exception:
                log.exception("telemetry: closing %r failed", close)
        ended = self.event(
            SESSION_ENDED, backend=SESSION_BACKEND, duration_seconds=time.time() - self._started_at
        )
        self.emit(ended)
        self._deliver()
        if self._async_deliveries:
            await asyncio.wait(set(self._async_deliveries), timeout=5.0)
        self._stopped_at = time.time()
        for final in self._finals:
            try:
                final()
            except Exception:
                log.exception("telemetry: closing %r failed", final)
        await asyncio.to_thread(self._session.shutdown)  # exporters may block on I/O
        self._last_summary = self.summary()

    # -- the engine's listener: workflow scopes and shutdown ----------------------------

    def workflow_entered(self, workflow_id: str) -> None:
        self._session.workflow_entered(workflow_id)

    def workflow_exited(self, workflow_id: str) -> None:
        self._session.workflow_exited(workflow_id)

    async def engine_shut_down(self) -> None:
        """The engine shut down: the session ends with it (its span too), so a
        program that never calls ``stop()`` still exports a whole trace."""
        await self.stop()

    @contextmanager
    def span_scope(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A span of your own under the session span (for user code around tasks)."""
        with self._session.span_scope(name, attributes) as span:
            yield span

    def read_metrics(self) -> Any:
        """The current OpenTelemetry ``MetricsData`` (the last one after ``stop()``)."""
        return self._session.read_metrics()

    def read_traces(self) -> tuple[Any, ...]:
        """Finished spans, when started with ``keep_spans=True`` (else empty)."""
        return self._session.read_traces()

    # -- internals --------------------------------------------------------------------

    def add_closer(self, close: Callable[[], Any]) -> None:
        self._closers.append(close)

    def add_final(self, close: Callable[[], Any]) -> None:
        self._finals.append(close)

    @property
    def started_at(self) -> float:
        return self._started_at

    def _task_event(
        self, event_type: str, node: Node, backend: str, t_ns: int, **extra: Any
    ) -> None:
        """A lifecycle event of ``node`` (the observer calls this while subscribed)."""
        attributes: dict[str, Any] = {"executable": node.name, "task_type": node.kind.value}
        if node.workflow_id is not None:
            attributes["asyncflow.workflow_id"] = node.workflow_id
        if event_type == TASK_CREATED:
            attributes["depends_on"] = extra.pop("depends_on", [])
        self._enqueue(
            self.event(
                event_type,
                task_id=node.key,
                backend=backend,
                attributes=attributes,
                event_time=t_ns * 1e-9,
                **extra,
            )
        )

    def _enqueue(self, event: TelemetryEvent) -> None:
        self._queue.append(event)
        if not self._delivery_scheduled:
            self._delivery_scheduled = True
            self._engine.loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery_scheduled = False
        events, self._queue = self._queue, []
        subscribers = tuple(self._subscribers)
        for event in events:
            for callback in subscribers:
                try:
                    out = callback(event)
                    if inspect.isawaitable(out):
                        self._track(out)
                except Exception:
                    log.exception("telemetry subscriber %r failed on %s", callback, event)

    def _track(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._async_deliveries.add(task)
        task.add_done_callback(self._async_done)

    def _async_done(self, task: asyncio.Task[Any]) -> None:
        self._async_deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async telemetry subscriber failed: %r", task.exception())

    def __repr__(self) -> str:
        state = "stopped" if self._stopped_at is not None else "running"
        return f"<TelemetryManager {self.session_id} {state}>"


_COUNTS = (
    "created",
    "submitted",
    "started",
    "completed",
    "failed",
    "canceled",
    "queued",
    "running",
)


def _counts(s: BackendStats) -> dict[str, int]:
    """RHAPSODY's task counts, in its order."""
    return {
        "submitted": s.submitted,
        "completed": s.completed,
        "failed": s.failed,
        "canceled": s.canceled,
        "running": s.running,
    }


def _durations(s: BackendStats) -> dict[str, float]:
    if not s.dur_n:
        return {}
    return {
        "count": s.dur_n,
        "total_seconds": round(s.dur_sum, 6),
        "mean_seconds": round(s.dur_sum / s.dur_n, 6),
        "min_seconds": round(s.dur_min, 6),
        "max_seconds": round(s.dur_max, 6),
    }

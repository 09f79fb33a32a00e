"""The one run observer behind ``start_telemetry()``: counts, durations, spans, events.

It is on the executor's hot path, so it allocates little per task and works per
batch: ``on_plan``, ``on_submitted`` and ``on_done_many`` take a backend's batch, a key maps to its
partition's shared record, counters are plain ints, durations and live counts are
read from the executor, and the span recorder and the event sink are called only
when they are on. (Every object allocated per task that lives until
the task ends is one more object for the cyclic GC to walk; measured, that was a
large share of the cost.) No OpenTelemetry here: the span recorder
(``spantree.SpanTree``) is a collaborator behind a small protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any, Protocol

from ..compiler.plan import ENGINE_BACKEND, Plan, Unit
from ..executor.events import RunObserver, RunView
from ..protocol import TaskState
from ..spec import Node
from .names import (
    TASK_CANCELED,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_FAILED,
    TASK_QUEUED,
    TASK_RESOLVED,
    TASK_STARTED,
    TASK_SUBMITTED,
    BackendStats,
)

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "OPEN",
    "SpanSink",
    "StartedEvents",
    "TaskEventSink",
    "TelemetryObserver",
]

# How a task span ends; RUNNING: it had not ended when the session did.
DONE, FAILED, CANCELLED, OPEN = (
    TaskState.DONE,
    TaskState.FAILED,
    TaskState.CANCELLED,
    TaskState.RUNNING,
)
_END_EVENT = {DONE: TASK_COMPLETED, FAILED: TASK_FAILED, CANCELLED: TASK_CANCELED}
#: pending histogram values per backend are pushed in the hot path past this many
#: (only when no metric reader collects for that long: it bounds the memory)
MAX_PENDING_DURATIONS = 100_000

#: shared by every key of one partition: (the plan's nodes, the backend's stats,
#: partition id, compiled at ns)
Record = tuple[Mapping[str, Node], BackendStats, int, int]


class SpanSink(Protocol):
    def member_planned(self, wid: str, t: int) -> None: ...
    def block_started(self, node: Node, pid: int, t: int) -> None: ...
    def task_ended(
        self, node: Node, backend: str, pid: int, start: int, end: int, outcome: TaskState, err: Any
    ) -> None: ...
    def tasks_done(self, done: Sequence[tuple[Node, str, int, int]], end: int) -> None: ...


class TaskEventSink(Protocol):
    def __call__(
        self, event_type: str, node: Node, backend: str, t_ns: int, **extra: Any
    ) -> None: ...


class TelemetryObserver(RunObserver):
    """Task counts per backend, running -> end durations, and (when attached) spans
    and AsyncFlow lifecycle events.

    It overrides no ``on_running``: durations come from the executor's
    :class:`~asyncflow_graph.executor.events.RunView` and live counts are read from
    it when asked, so a task costs this observer a share of one call per batch. The
    ``TaskStarted`` event is :class:`StartedEvents`' job, attached only while
    someone is subscribed."""

    def __init__(self, spans: SpanSink | None = None) -> None:
        self.stats: dict[str, BackendStats] = {}
        self.spans = spans
        #: set by the manager while someone is subscribed
        self.events: TaskEventSink | None = None
        self.flush_durations: Callable[[], None] | None = None  # set by the OTel session
        self.recs: dict[str, Record] = {}
        self._run: RunView | None = None
        self._durations: Mapping[str, float] = {}

    def on_attach(self, run: RunView) -> None:
        self._run = run
        self._durations = run.durations

    def _stats(self, backend: str) -> BackendStats:
        s = self.stats.get(backend)
        if s is None:
            s = self.stats[backend] = BackendStats(backend)
        return s

    # -- hooks ---------------------------------------------------------------------------

    def on_plan(self, plan: Plan) -> None:
        t = time_ns()
        nodes, recs, spans = plan.nodes, self.recs, self.spans
        seen = 0
        for p in plan.partitions:
            s = self._stats(p.backend)
            recs.update(dict.fromkeys(p.keys, (nodes, s, p.id, t)))  # one shared record
            s.created += len(p.keys)
            seen += len(p.keys)
            if spans is not None and p.backend == ENGINE_BACKEND:
                for k in p.keys:
                    spans.block_started(nodes[k], p.id, t)
        if seen < len(nodes):  # keys outside every partition (none today): still counted
            for k in nodes:
                if k not in recs:
                    s = self._stats(plan.backend_of.get(k, ENGINE_BACKEND))
                    recs[k] = (nodes, s, -1, t)
                    s.created += 1
        if spans is not None:
            self._open_workflows(nodes, spans, t)
        if self.events is not None:
            for k, node in nodes.items():
                name = recs[k][1].name
                self.events(TASK_CREATED, node, name, t, depends_on=list(node.deps))

    def _open_workflows(self, nodes: Mapping[str, Node], spans: SpanSink, t: int) -> None:
        # a workflow's span lasts until its scope is left and its direct members end
        for node in nodes.values():
            wid = node.workflow_id
            if wid is not None and node.parent is None:
                spans.member_planned(wid, t)

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        self._stats(backend).submitted += sum(len(u.keys) for u in units)
        if self.events is not None:
            self._submitted_events(backend, units)

    def _submitted_events(self, backend: str, units: Sequence[Unit]) -> None:
        t, emit, recs = time_ns(), self.events, self.recs
        assert emit is not None
        for u in units:
            for k in u.keys:
                rec = recs.get(k)
                if rec is not None:
                    for event_type in (TASK_RESOLVED, TASK_QUEUED, TASK_SUBMITTED):
                        emit(event_type, rec[0][k], backend, t)

    def on_done_many(self, done: Sequence[tuple[str, Any]]) -> None:
        # The common ending, for a backend's batch (single keys come as a batch of
        # one): lookups hoisted, one call to the span tree for the lot.
        t = time_ns()
        recs, durations, events = self.recs, self._durations, self.events
        spans: list[tuple[Node, str, int, int]] | None = [] if self.spans is not None else None
        try:
            for key, _value in done:
                rec = recs.pop(key, None)
                if rec is None:  # planned before telemetry started
                    continue
                nodes, s, pid, created = rec
                seconds = durations.get(key)
                if seconds is not None:
                    s.recent.append(seconds)
                s.completed += 1
                if not s.completed & 0x3FFF and len(s.recent) > MAX_PENDING_DURATIONS:
                    self._flush_durations()  # looked at every 16384 tasks only
                if spans is not None:
                    spans.append((nodes[key], s.name, pid, created))
                if events is not None:
                    events(TASK_COMPLETED, nodes[key], s.name, t, duration_seconds=seconds or 0.0)
        finally:  # the keys taken from recs get their spans even if a subscriber raised
            if spans and self.spans is not None:
                self.spans.tasks_done(spans, t)

    def _flush_durations(self) -> None:
        if self.flush_durations is not None:
            self.flush_durations()

    def on_failed(self, key: str, exc: BaseException) -> None:
        self._end(key, FAILED, exc)

    def on_cancelled(self, key: str, msg: str | None) -> None:
        self._end(key, CANCELLED, msg)

    def _end(self, key: str, outcome: TaskState, err: Any) -> None:
        rec = self.recs.pop(key, None)
        if rec is None:  # planned before telemetry started
            return
        t = time_ns()
        nodes, s, pid, created = rec
        seconds = self._durations.get(key)
        if seconds is not None:
            s.recent.append(seconds)
        if outcome == FAILED:
            s.failed += 1
        else:
            s.canceled += 1
        if self.spans is not None:
            self.spans.task_ended(nodes[key], s.name, pid, created, t, outcome, err)
        if self.events is not None:
            extra: dict[str, Any] = {"duration_seconds": seconds or 0.0}
            if outcome == FAILED:
                extra["error_type"] = type(err).__name__
            self.events(_END_EVENT[outcome], nodes[key], s.name, t, **extra)

    # -- live counts ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring each backend's live counts (queued, running, started) up to date
        from the executor. May run on a metric reader's thread."""
        live = self._run.live_counts() if self._run is not None else {}
        for name, s in list(self.stats.items()):
            s.absorb()
            queued, running = live.get(name, (0, 0))
            s.queued, s.running, s.started = queued, running, s.ran + running

    # -- end of session ------------------------------------------------------------------

    def close(self) -> None:
        """Record the tasks still open when telemetry stops as unfinished spans."""
        if self.spans is not None:
            t = time_ns()
            for key, (nodes, s, pid, created) in self.recs.items():
                self.spans.task_ended(nodes[key], s.name, pid, created, t, OPEN, None)
        self.recs.clear()


class StartedEvents(RunObserver):
    """AsyncFlow's ``TaskStarted`` event, the one lifecycle event that needs a call
    per key at its start: attached by the manager only while someone is subscribed."""

    def __init__(self, telemetry: TelemetryObserver) -> None:
        self.telemetry = telemetry

    def on_running(self, key: str) -> None:
        rec, emit = self.telemetry.recs.get(key), self.telemetry.events
        if rec is not None and emit is not None:
            emit(TASK_STARTED, rec[0][key], rec[1].name, time_ns())

"""The one run observer behind ``start_telemetry()``: counts, durations, spans, events.

It is on the executor's hot path (every task passes through ``on_plan``,
``on_submitted``, usually ``on_running`` and one ending hook), so it allocates
nothing per task: a key maps to its partition's shared record, its phase is an int
in a second dict, counters are plain ints, and the span recorder and the event sink
are called only when they are on. (Every object allocated per task that lives until
the task ends is one more object for the cyclic GC to walk; measured, that was a
large share of the cost.) No OpenTelemetry here: the span recorder
(``otel._Spans``) is a collaborator behind a small protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any, Protocol

from ..compiler.plan import ENGINE_BACKEND, Plan, Unit
from ..executor.events import RunObserver
from ..spec import Node
from .manager import (
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

__all__ = ["CANCELLED", "DONE", "FAILED", "OPEN", "SpanSink", "TaskEventSink", "TelemetryObserver"]

DONE, FAILED, CANCELLED, OPEN = 0, 1, 2, 3
_END_EVENT = (TASK_COMPLETED, TASK_FAILED, TASK_CANCELED)
#: pending histogram values per backend are pushed in the hot path past this many
#: (only when no metric reader collects for that long: it bounds the memory)
MAX_PENDING_DURATIONS = 100_000

#: shared by every key of one partition: (the plan's nodes, the backend's stats,
#: partition id, compiled at ns)
Record = tuple[Mapping[str, Node], BackendStats, int, int]


class SpanSink(Protocol):
    def workflow(self, wid: str, t: int) -> Any: ...
    def block_started(self, node: Node, pid: int, t: int) -> None: ...
    def task_ended(
        self, node: Node, backend: str, pid: int, start: int, end: int, outcome: int, err: Any
    ) -> None: ...


class TaskEventSink(Protocol):
    def __call__(
        self, event_type: str, node: Node, backend: str, t_ns: int, **extra: Any
    ) -> None: ...


class TelemetryObserver(RunObserver):
    """Task counts per backend, running -> end durations, and (when attached) spans
    and AsyncFlow lifecycle events."""

    def __init__(self, spans: SpanSink | None = None) -> None:
        self.stats: dict[str, BackendStats] = {}
        self.spans = spans
        #: set by the manager while someone is subscribed
        self.events: TaskEventSink | None = None
        self.flush_durations: Callable[[], None] | None = None  # set by the OTel session
        self._recs: dict[str, Record] = {}
        #: submitted keys: 0 queued, else running since (ns)
        self._phase: dict[str, int] = {}
        self._workflows: set[str] = set()

    def _stats(self, backend: str) -> BackendStats:
        s = self.stats.get(backend)
        if s is None:
            s = self.stats[backend] = BackendStats(backend)
        return s

    # -- hooks ---------------------------------------------------------------------------

    def on_plan(self, plan: Plan) -> None:
        t = time_ns()
        nodes, recs, spans = plan.nodes, self._recs, self.spans
        seen = 0
        for p in plan.partitions:
            s = self._stats(p.backend)
            rec = (nodes, s, p.id, t)
            for u in p.units:
                for k in u.keys:
                    recs[k] = rec
                s.created += len(u.keys)
                seen += len(u.keys)
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
        workflows = self._workflows
        for node in nodes.values():
            wid = node.workflow_id
            if wid is not None and node.parent is None and wid not in workflows:
                workflows.add(wid)
                spans.workflow(wid, t)

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        phase = self._phase
        n = 0
        for u in units:
            for k in u.keys:
                phase[k] = 0  # queued (a retry comes back here too)
            n += len(u.keys)
        self._stats(backend).submitted += n
        if self.events is not None:
            self._submitted_events(backend, units)

    def _submitted_events(self, backend: str, units: Sequence[Unit]) -> None:
        t, emit, recs = time_ns(), self.events, self._recs
        assert emit is not None
        for u in units:
            for k in u.keys:
                rec = recs.get(k)
                if rec is not None:
                    for event_type in (TASK_RESOLVED, TASK_QUEUED, TASK_SUBMITTED):
                        emit(event_type, rec[0][k], backend, t)

    def on_running(self, key: str) -> None:
        # Only the start time: live counts are derived from _phase in refresh().
        phase = self._phase
        if key in phase:
            t = phase[key] = time_ns()
            if self.events is not None:
                self._started_event(key, t)

    def _started_event(self, key: str, t: int) -> None:
        rec, emit = self._recs.get(key), self.events
        if rec is not None and emit is not None:
            emit(TASK_STARTED, rec[0][key], rec[1].name, t)

    def on_done(self, key: str, value: Any) -> None:
        # The common ending, kept apart from _end() to spare a call per task.
        rec = self._recs.pop(key, None)
        if rec is None:  # planned before telemetry started
            self._phase.pop(key, None)
            return
        t = time_ns()
        nodes, s, pid, created = rec
        since = self._phase.pop(key, 0)
        seconds = 0.0
        if since:
            seconds = (t - since) * 1e-9
            s.ran += 1
            s.add_duration(seconds)
            if not s.dur_n & 0x3FFF and len(s.recent) > MAX_PENDING_DURATIONS:
                self._flush_durations()  # looked at every 16384 tasks only
        s.completed += 1
        if self.spans is not None:
            self.spans.task_ended(nodes[key], s.name, pid, created, t, DONE, None)
        if self.events is not None:
            self.events(TASK_COMPLETED, nodes[key], s.name, t, duration_seconds=seconds)

    def _flush_durations(self) -> None:
        if self.flush_durations is not None:
            self.flush_durations()

    def on_failed(self, key: str, exc: BaseException) -> None:
        self._end(key, FAILED, exc)

    def on_cancelled(self, key: str, msg: str | None) -> None:
        self._end(key, CANCELLED, msg)

    def _end(self, key: str, outcome: int, err: Any) -> None:
        rec = self._recs.pop(key, None)
        if rec is None:  # planned before telemetry started
            self._phase.pop(key, None)
            return
        t = time_ns()
        nodes, s, pid, created = rec
        since = self._phase.pop(key, 0)
        seconds = 0.0
        if since:
            seconds = (t - since) * 1e-9
            s.ran += 1
            s.add_duration(seconds)
        if outcome == FAILED:
            s.failed += 1
        else:
            s.canceled += 1
        if self.spans is not None:
            self.spans.task_ended(nodes[key], s.name, pid, created, t, outcome, err)
        if self.events is not None:
            extra: dict[str, Any] = {"duration_seconds": seconds}
            if outcome == FAILED:
                extra["error_type"] = type(err).__name__
            self.events(_END_EVENT[outcome], nodes[key], s.name, t, **extra)

    # -- live counts ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute each backend's live counts (queued, running, started) from the
        open keys. May run on a metric reader's thread: both dicts are copied in
        one C-level step each, and the loop thread never writes these fields."""
        phase, recs = dict(self._phase), dict(self._recs)
        live: dict[str, list[int]] = {name: [0, 0] for name in list(self.stats)}
        for key, since in phase.items():
            rec = recs.get(key)
            if rec is not None:
                live.setdefault(rec[1].name, [0, 0])[1 if since else 0] += 1
        for name, (queued, running) in live.items():
            s = self.stats.get(name)
            if s is not None:
                s.queued, s.running, s.started = queued, running, s.ran + running

    # -- end of session ------------------------------------------------------------------

    def close(self) -> None:
        """Record the tasks still open when telemetry stops as unfinished spans."""
        if self.spans is not None:
            t = time_ns()
            for key, (nodes, s, pid, created) in self._recs.items():
                self.spans.task_ended(nodes[key], s.name, pid, created, t, OPEN, None)
        self._recs.clear()
        self._phase.clear()

"""OpenTelemetry spans and metrics of one engine, fed by the executor's hooks.

Spans: ``session`` (root, one trace per engine session) -> ``workflow`` (one per
workflow id) -> ``block`` (one per block run, nested blocks nest) -> ``task``. The
parent of a span comes from the graph (the node's enclosing block, else its workflow
id), never from the ambient OTel context, so concurrent scopes and engines cannot
leak into each other. Task spans run from creation to the terminal event, as in
AsyncFlow, and carry RHAPSODY's attribute names (``session_id``, ``task_id``,
``executable``, ``task_type``, ``backend``, ``status``, ``error_type``) plus
``asyncflow.workflow_id``, ``asyncflow.state``, ``asyncflow.partition_id`` and
``asyncflow.block_id``. Failed spans have an ERROR status and an ``exception`` event.

Cost: task spans are the hot path (one per task), so they are recorded, not opened:
at the task's end one ``ReadableSpan`` is built with its real start and end times and
handed to the span processors' ``on_end`` (what exporters use), skipping the SDK's
per-span locking, attribute validation and sampler call (task spans follow the
session span's sampling decision). ``on_start`` is therefore not called for task
spans; session, workflow and block spans are ordinary SDK spans. Metrics are
observable instruments reading plain counters, and the duration histogram is fed in
bulk when a reader collects: the hot path never touches an OTel instrument.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.util.instrumentation import (
    InstrumentationScope,
)
from opentelemetry.trace import SpanContext, Status, StatusCode

from .. import __version__
from ..compiler.plan import ENGINE_BACKEND
from ..spec import Node, TaskKind
from .observer import CANCELLED, FAILED, OPEN, TelemetryObserver

__all__ = ["OTelSession"]

SCOPE = "asyncflow_graph"
_KIND = {k: k.value for k in TaskKind}
_STATUS = ("completed", "failed", "canceled", "unfinished")
_STATE = ("DONE", "FAILED", "CANCELLED", "UNFINISHED")
_UNSET = Status(StatusCode.UNSET)


class _Spans:
    """The span tree of one session (used only when the session span is sampled)."""

    def __init__(self, tracer: Any, on_end: Any, session_span: Any, provider: Any, sid: str):
        self.tracer = tracer
        self.on_end = on_end
        self.session_span = session_span
        self.session_ctx: SpanContext = session_span.get_span_context()
        self.session_context = trace_api.set_span_in_context(session_span)
        self.trace_id = self.session_ctx.trace_id
        self.flags = self.session_ctx.trace_flags
        self.new_id = provider.id_generator.generate_span_id
        self.resource = provider.resource
        self.scope = InstrumentationScope(SCOPE, __version__)
        self.sid = sid
        self.workflows: dict[str, Any] = {}  # workflow id -> SDK span
        self.wf_ctx: dict[str, SpanContext] = {}
        self.wf_end: dict[str, int] = {}  # workflow id -> latest end of a direct member
        self.blocks: dict[str, Any] = {}  # block key -> open SDK span
        self.block_ctx: dict[str, SpanContext] = {}

    def workflow(self, wid: str, t: int) -> SpanContext:
        ctx = self.wf_ctx.get(wid)
        if ctx is None:
            span = self.tracer.start_span(
                "workflow",
                context=self.session_context,
                start_time=t,
                attributes={"asyncflow.workflow_id": wid, "session_id": self.sid},
            )
            self.workflows[wid] = span
            ctx = self.wf_ctx[wid] = span.get_span_context()
        return ctx

    def parent_of(self, node: Node, t_end: int) -> SpanContext:
        if node.parent is not None:
            return self.block_ctx.get(node.parent, self.session_ctx)
        wid = node.workflow_id
        if wid is None:
            return self.session_ctx
        if t_end > self.wf_end.get(wid, 0):
            self.wf_end[wid] = t_end
        return self.wf_ctx.get(wid) or self.workflow(wid, t_end)

    def block_started(self, node: Node, pid: int, t: int) -> None:
        attrs = _attributes(node, ENGINE_BACKEND, pid, self.sid)
        attrs["asyncflow.workflow_id"] = node.key  # as AsyncFlow: a block is a workflow
        if node.workflow_id is not None:
            attrs["asyncflow.parent_workflow_id"] = node.workflow_id
        parent = self.parent_of(node, t)
        span = self.tracer.start_span(
            "block",
            context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent)),
            start_time=t,
            attributes=attrs,
        )
        self.blocks[node.key] = span
        self.block_ctx[node.key] = span.get_span_context()

    def task_ended(
        self, node: Node, backend: str, pid: int, start: int, end: int, outcome: int, err: Any
    ) -> None:
        if backend == ENGINE_BACKEND:
            block = self.blocks.pop(node.key, None)
            if block is not None:
                self._end_block(block, node, end, outcome, err)
                return
        attrs = {
            "session_id": self.sid,
            "task_id": node.key,
            "executable": node.name,
            "task_type": node.kind._value_,  # the plain str (Enum.value is slower)
            "backend": backend,
            "status": _STATUS[outcome],
            "asyncflow.state": _STATE[outcome],
            "asyncflow.partition_id": pid,
        }
        # parent_of(), inlined: this runs once per task
        wid, block = node.workflow_id, node.parent
        if wid is not None:
            attrs["asyncflow.workflow_id"] = wid
        if block is not None:
            attrs["asyncflow.block_id"] = block
            parent = self.block_ctx.get(block, self.session_ctx)
        elif wid is not None:
            parent = self.wf_ctx.get(wid) or self.workflow(wid, start)
            if end > self.wf_end.get(wid, 0):
                self.wf_end[wid] = end
        else:
            parent = self.session_ctx
        context = SpanContext(self.trace_id, self.new_id(), False, self.flags)
        if outcome:  # status and events only off the common path (UNSET = success)
            status, events = self._outcome(attrs, outcome, err, end)
            span = ReadableSpan(
                "task",
                context,
                parent,
                self.resource,
                attrs,
                events,
                status=status,
                start_time=start,
                end_time=end,
                instrumentation_scope=self.scope,
            )
        else:
            span = ReadableSpan(
                "task",
                context,
                parent,
                self.resource,
                attrs,
                start_time=start,
                end_time=end,
                instrumentation_scope=self.scope,
            )
        self.on_end(span)

    def _outcome(
        self, attrs: dict[str, Any], outcome: int, err: Any, t: int
    ) -> tuple[Status, tuple[Event, ...]]:
        if outcome == FAILED and isinstance(err, BaseException):
            attrs["error_type"] = type(err).__name__
            event = Event("exception", _exception_attributes(err), t)
            return Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"), (event,)
        if outcome == CANCELLED and err:
            attrs["asyncflow.cancel_message"] = str(err)
        return _UNSET, ()

    def _end_block(self, span: Any, node: Node, end: int, outcome: int, err: Any) -> None:
        attrs: dict[str, Any] = {}
        status: Status = _UNSET
        events: tuple[Event, ...] = ()
        if outcome:
            status, events = self._outcome(attrs, outcome, err, end)
        attrs["status"] = _STATUS[outcome]
        attrs["asyncflow.state"] = _STATE[outcome]
        span.set_attributes(attrs)
        for event in events:
            span.add_event(event.name, event.attributes, event.timestamp)
        span.set_status(status)
        span.end(end_time=end)
        self.parent_of(node, end)  # a block's end extends its workflow

    def close(self, now: int) -> None:
        for key, span in list(self.blocks.items()):
            span.set_attribute("status", _STATUS[OPEN])
            span.end(end_time=now)
            del self.blocks[key]
        for wid, span in self.workflows.items():
            span.end(end_time=max(self.wf_end.get(wid, now), span.start_time or 0))
        self.workflows.clear()
        self.session_span.end(end_time=now)


def _attributes(node: Node, backend: str, pid: int, sid: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "session_id": sid,
        "task_id": node.key,
        "executable": node.name,
        "task_type": node.kind._value_,
        "backend": backend,
        "asyncflow.partition_id": pid,
    }
    if node.parent is not None:
        attrs["asyncflow.block_id"] = node.parent
    return attrs


def _exception_attributes(exc: BaseException) -> dict[str, str]:
    return {
        "exception.type": type(exc).__qualname__,
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        "exception.escaped": "False",
    }


class _SpanBuffer(SpanProcessor):
    """``keep_spans=True``: every finished span, for ``read_traces()``. A processor
    that appends (deque.append is atomic), not SimpleSpanProcessor + an in-memory
    exporter, which attaches and detaches an OTel context for every span."""

    def __init__(self) -> None:
        self.spans: deque[ReadableSpan] = deque()

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class OTelSession:
    """The OpenTelemetry side of one engine's telemetry: providers, the span tree,
    the metric instruments, and the run observer that feeds them."""

    def __init__(
        self,
        session_id: str,
        *,
        span_processors: Sequence[SpanProcessor] | None = None,
        metric_readers: Sequence[MetricReader] | None = None,
        resource: Resource | None = None,
        keep_spans: bool = False,
    ) -> None:
        self.session_id = session_id
        self.resource = resource if resource is not None else _default_resource(session_id)
        self._buffer = _SpanBuffer() if keep_spans else None
        processors: list[SpanProcessor] = []
        if self._buffer is not None:
            processors.append(self._buffer)
        processors.extend(span_processors or ())
        multi = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        for p in processors:
            multi.add_span_processor(p)
        # Our own providers, never the global ones: engines must not share spans.
        # shutdown_on_exit=False: the processors are the caller's (they may be shared
        # by several engines); stop() flushes them and leaves their shutdown to them.
        self.tracer_provider = TracerProvider(
            resource=self.resource, active_span_processor=multi, shutdown_on_exit=False
        )
        self.tracer = self.tracer_provider.get_tracer(SCOPE, __version__)
        self._session_span = self.tracer.start_span(
            "session", attributes={"session_id": session_id, "backend": "asyncflow"}
        )
        ctx = self._session_span.get_span_context()
        spans = None
        if processors and ctx.is_valid and ctx.trace_flags.sampled:
            # one processor (the usual case): call it directly, not through the multi
            on_end = processors[0].on_end if len(processors) == 1 else multi.on_end
            spans = _Spans(
                self.tracer, on_end, self._session_span, self.tracer_provider, session_id
            )
        self._spans = spans
        self.observer = TelemetryObserver(spans)
        self.stats = self.observer.stats
        self._reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(
            metric_readers=[self._reader, *(metric_readers or ())],
            resource=self.resource,
            shutdown_on_exit=False,
        )
        self._register_instruments()
        self.observer.flush_durations = self.flush_durations
        self._last_metrics: Any = None
        self._finished = False

    # -- metrics ------------------------------------------------------------------------

    def _register_instruments(self) -> None:
        meter = self.meter_provider.get_meter(SCOPE, __version__)
        self._histogram = meter.create_histogram(
            "task_duration_seconds", unit="s", description="task run time (running -> end)"
        )
        # Registered first: collection runs callbacks in order, so the histogram gets
        # the pending durations before the storage is read.
        meter.create_observable_gauge(
            "asyncflow.queue_depth",
            callbacks=[self._queue_depth],
            unit="{task}",
            description="tasks handed to a backend and not started yet",
        )
        meter.create_observable_up_down_counter(
            "asyncflow.tasks",
            callbacks=[self._by_state],
            unit="{task}",
            description="tasks by backend and state",
        )
        for name, field in (
            ("tasks_submitted", "submitted"),
            ("tasks_started", "started"),
            ("tasks_completed", "completed"),
            ("tasks_failed", "failed"),
            ("tasks_canceled", "canceled"),
        ):
            meter.create_observable_counter(name, callbacks=[self._counter(field)], unit="{task}")
        meter.create_observable_up_down_counter(
            "tasks_running", callbacks=[self._counter("running")], unit="{task}"
        )

    def _per_backend(self) -> list[tuple[str, Any]]:
        return list(self.stats.items())  # one C-level copy: safe from a reader thread

    def _queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        # The first callback of a collection: bring everything the others read up
        # to date (the live counts, and the histogram's pending durations).
        self.observer.refresh()
        self.flush_durations()
        return [Observation(s.queued, {"backend": b}) for b, s in self._per_backend()]

    def _by_state(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"backend": b, "state": state})
            for b, s in self._per_backend()
            for state, n in s.by_state().items()
        ]

    def _counter(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(s, field), {"backend": b}) for b, s in self._per_backend()]

        return observe

    def flush_durations(self) -> None:
        """Record the pending durations in the histogram (deque.popleft is atomic, so
        a reader thread and the loop thread may both drain)."""
        for backend, stats in list(self.stats.items()):
            attrs, pending = {"backend": backend}, stats.recent
            record = self._histogram.record
            while True:
                try:
                    value = pending.popleft()
                except IndexError:
                    break
                record(value, attrs)

    def read_metrics(self) -> Any:
        if self._finished:
            return self._last_metrics
        return self._reader.get_metrics_data()  # runs the callbacks, which flush

    def read_traces(self) -> tuple[Any, ...]:
        return tuple(self._buffer.spans) if self._buffer is not None else ()

    @contextmanager
    def span_scope(self, name: str, attributes: Mapping[str, Any] | None) -> Iterator[Any]:
        span = self.tracer.start_span(
            name,
            context=trace_api.set_span_in_context(self._session_span),
            attributes=dict(attributes or {}),
        )
        with trace_api.use_span(span, end_on_exit=True):
            yield span

    # -- end ------------------------------------------------------------------------------

    def finish(self) -> None:
        """On the loop thread: end open spans (tasks still running are recorded as
        unfinished), the workflow and session spans, and take the last metrics."""
        if self._finished:
            return
        self.observer.close()
        if self._spans is not None:
            self._spans.close(time.time_ns())
        else:
            self._session_span.end()
        self._last_metrics = self._reader.get_metrics_data()
        self._finished = True

    def shutdown(self) -> None:
        """Flush every span processor, export metrics a last time and release the
        meter provider (may block on exporters' I/O: call it off the loop)."""
        self.tracer_provider.force_flush()
        self.meter_provider.shutdown()


def _default_resource(session_id: str) -> Resource:
    attrs: dict[str, Any] = {"session_id": session_id}
    env = os.environ
    if not env.get("OTEL_SERVICE_NAME") and "service.name" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs["service.name"] = SCOPE
    return Resource.create(attrs)  # also reads OTEL_RESOURCE_ATTRIBUTES

"""OpenTelemetry spans and metrics of one engine, fed by the executor's hooks.

Spans: ``session`` (root, one trace per engine session) -> ``workflow`` -> ``block``
-> ``task``, built by :class:`~asyncflow_graph.telemetry.spantree.SpanTree` (see
there for their attributes and how task spans are kept cheap). Metrics are
observable instruments reading plain counters, and the duration histogram is fed in
bulk when a reader collects: the hot path never touches an OTel instrument.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)

from ..version import __version__
from .observer import TelemetryObserver
from .spantree import SCOPE, SpanTree

__all__ = ["OTelSession"]


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
            on_end: Callable[[ReadableSpan], None] = (
                processors[0].on_end if len(processors) == 1 else multi.on_end
            )
            if self._buffer is not None and len(processors) == 1:
                on_end = self._buffer.spans.append  # what _SpanBuffer.on_end does, minus a call
            spans = SpanTree(
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
        """Fold in the pending durations and record them in the histogram (safe on
        the loop thread and a reader's thread alike: see BackendStats.absorb)."""
        record = self._histogram.record
        for backend, stats in list(self.stats.items()):
            stats.absorb()
            attrs = {"backend": backend}
            for value in stats.take_unrecorded():
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

    def workflow_entered(self, wid: str) -> None:
        if self._spans is not None:
            self._spans.workflow_entered(wid, time.time_ns())

    def workflow_exited(self, wid: str) -> None:
        if self._spans is not None:
            # Decided after this loop turn's compile (scheduled before us, so it runs
            # first): tasks created in the scope just before it was left are members.
            loop = asyncio.get_running_loop()
            loop.call_soon(self._spans.workflow_exited, wid, time.time_ns())

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

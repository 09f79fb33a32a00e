"""Observability: OpenTelemetry spans and metrics, AsyncFlow telemetry events, a JSONL
event log, a timeline plot and progress bars.

Everything here is an observer of the executor's run hooks, attached only when
asked for: with none attached the executor pays one truthiness test per step.
Heavy imports (opentelemetry, matplotlib, rich) happen only when the feature that
needs them is used, never on ``import asyncflow_graph``.

* ``await flow.start_telemetry(...)`` -> :class:`TelemetryManager` (needs the
  ``telemetry`` extra: ``opentelemetry-sdk``).
* :func:`record_events` / :class:`EventLog` write the JSONL log, :func:`read_events`
  and :func:`load_tasks` read it back.
* :func:`plot_timeline` draws a run from its log (matplotlib).
* :func:`show_progress` shows tasks done / total per backend (rich, on a terminal).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from ..executor.events import ObservedEngine, RunObserver
    from .checkpoint import CheckpointWriter, define_event, make_event
    from .eventlog import EventLog, EventRecord, TaskRecord, load_tasks, read_events, record_events
    from .manager import TelemetryEvent, TelemetryManager
    from .progress import ProgressBar, show_progress
    from .timeline import plot_timeline

__all__ = [
    "EventLog",
    "EventRecord",
    "ProgressBar",
    "TaskRecord",
    "TelemetryEvent",
    "TelemetryManager",
    "define_event",
    "load_tasks",
    "make_event",
    "plot_timeline",
    "read_events",
    "record_events",
    "show_progress",
    "start_telemetry",
]

_log = logging.getLogger("asyncflow_graph.telemetry")

__getattr__ = lazy_attributes(
    __name__,
    {
        "EventLog": ".eventlog",
        "EventRecord": ".eventlog",
        "TaskRecord": ".eventlog",
        "load_tasks": ".eventlog",
        "read_events": ".eventlog",
        "record_events": ".eventlog",
        "TelemetryEvent": ".manager",
        "define_event": ".checkpoint",
        "make_event": ".checkpoint",
        "TelemetryManager": ".manager",
        "ProgressBar": ".progress",
        "show_progress": ".progress",
        "plot_timeline": ".timeline",
    },
)


async def start_telemetry(
    engine: ObservedEngine,
    resource_poll_interval: float = 5.0,
    checkpoint_interval: float | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    span_processors: Sequence[Any] | None = None,
    metric_readers: Sequence[Any] | None = None,
    resource: Any = None,
    *,
    keep_spans: bool = False,
    progress: bool = False,
) -> TelemetryManager:
    """Start telemetry for ``engine`` (AsyncFlow's ``start_telemetry`` signature).

    * ``span_processors`` / ``metric_readers``: OpenTelemetry SDK processors and
      readers (OTLP, Jaeger, Prometheus, in-memory ...), used as given. ``stop()``
      flushes the span processors but does not shut them down (one processor may
      serve several engines); it shuts the metric readers down with the meter
      provider. Without span processors no task span is built at all.
    * ``resource``: an ``opentelemetry.sdk.resources.Resource`` (default: service
      ``asyncflow_graph`` with ``session_id``, plus the ``OTEL_*`` environment).
    * ``checkpoint_path``: a directory (the file is
      ``<dir>/<session_id>.<unix ts>.telemetry.jsonl``) or a ``.jsonl`` file: the
      telemetry checkpoint in RHAPSODY's JSONL format (every event, then the spans and
      a metric snapshot; see ``checkpoint.py``), written once per loop turn.
    * ``keep_spans``: keep every finished span in memory for ``read_traces()``.
    * ``progress``: show a progress bar until ``stop()`` (terminals only).
    * ``resource_poll_interval`` and ``checkpoint_interval`` are accepted for
      AsyncFlow compatibility and unused: there is no node-resource poller, and the
      checkpoint is written as events happen rather than at intervals.

    Returns the :class:`TelemetryManager`; ``await manager.stop()`` ends the session.
    """
    del resource_poll_interval, checkpoint_interval  # see the docstring
    try:
        from .otel import OTelSession
    except ImportError as exc:
        from ..errors import missing_dependency

        raise missing_dependency("opentelemetry-sdk", "telemetry", "start_telemetry()") from exc
    from .manager import TelemetryManager

    queue = None
    if checkpoint_path is not None:
        from .checkpoint import SpanQueue

        queue = SpanQueue()  # the checkpoint's span lines
        span_processors = [*(span_processors or ()), queue]
    session = OTelSession(
        engine.uid,
        span_processors=span_processors,
        metric_readers=metric_readers,
        resource=resource,
        keep_spans=keep_spans,
    )
    manager = TelemetryManager(engine, session)
    if checkpoint_path is not None:
        from .checkpoint import CheckpointWriter, checkpoint_file

        path = checkpoint_file(checkpoint_path, engine.uid, manager.started_at)
        writer = CheckpointWriter(path, queue, on_error=manager.degrade)
        manager.subscribe(writer)
        manager.checkpoint_file = str(path)
        manager.add_final(partial(_close_checkpoint, manager, writer))
        _log.info("Telemetry checkpoint file: %s", path)
    if progress:
        from .progress import ProgressBar

        bar = ProgressBar()
        engine.add_observer(bar)
        bar.start()
        manager.add_closer(partial(_detach, engine, bar, bar.close))
    return manager


def _detach(engine: ObservedEngine, observer: RunObserver, close: Callable[[], None]) -> None:
    engine.remove_observer(observer)
    close()


def _close_checkpoint(manager: TelemetryManager, writer: CheckpointWriter) -> None:
    """After the last event: the final metric snapshot, the spans, then close."""
    manager.unsubscribe(writer)
    writer.write_metrics(manager.read_metrics())
    writer.close()

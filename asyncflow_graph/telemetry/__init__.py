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

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from ..executor.events import ObservedEngine, RunObserver
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
    "load_tasks",
    "plot_timeline",
    "read_events",
    "record_events",
    "show_progress",
    "start_telemetry",
]

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
    * ``checkpoint_path``: a directory (the log is
      ``<dir>/<session_id>.<unix ts>.events.jsonl``) or a ``.jsonl`` file: the JSONL
      lifecycle log, written line by line as the run goes.
    * ``keep_spans``: keep every finished span in memory for ``read_traces()``.
    * ``progress``: show a progress bar until ``stop()`` (terminals only).
    * ``resource_poll_interval`` and ``checkpoint_interval`` are accepted for
      AsyncFlow compatibility and unused: there is no node-resource poller, and the
      log is written as events happen rather than at intervals.

    Returns the :class:`TelemetryManager`; ``await manager.stop()`` ends the session.
    """
    del resource_poll_interval, checkpoint_interval  # see the docstring
    try:
        from .otel import OTelSession
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "start_telemetry() needs OpenTelemetry: pip install 'asyncflow-graph[telemetry]' "
            f"(opentelemetry-sdk); {exc}"
        ) from exc
    from .manager import TelemetryManager

    session = OTelSession(
        engine.uid,
        span_processors=span_processors,
        metric_readers=metric_readers,
        resource=resource,
        keep_spans=keep_spans,
    )
    manager = TelemetryManager(engine, session)
    if checkpoint_path is not None:
        from .eventlog import EventLog

        log = EventLog(_log_path(Path(checkpoint_path), engine.uid), engine=engine)
        engine.add_observer(log)
        manager.checkpoint_file = str(log.path)
        manager.add_closer(partial(_detach, engine, log, log.close))
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


def _log_path(path: Path, session_id: str) -> Path:
    if path.suffix == ".jsonl":
        return path
    return path / f"{session_id}.{int(time.time())}.events.jsonl"

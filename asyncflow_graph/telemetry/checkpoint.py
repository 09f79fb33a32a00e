"""The telemetry checkpoint in RHAPSODY's JSONL format (``checkpoint_path=``).

The file is ``<checkpoint_path>/<session id>.<unix time>.telemetry.jsonl`` (or the
``.jsonl`` path given), one JSON object per line with a ``section``:

* ``event``: every telemetry event, lifecycle or your own (``emit()``), with all its
  fields (``event_id``, ``event_type``, ``event_time``, ``emit_time``, ``session_id``,
  ``backend``, ``task_id``, ``node_id``, ``attributes``, and an event's own fields
  such as ``duration_seconds`` or a custom event's), plus ``name`` (= the event type),
  ``trace_id`` and ``span_id``;
* ``span``: each finished span (``name``, ``span_id``, ``trace_id``,
  ``parent_span_id`` as hex, ``start_ns``/``end_ns``, ``start_time_s``/``end_time_s``,
  ``duration_ms``, ``status_code``, ``status_description``, ``attributes``);
* ``metric``: a snapshot of the counters at the end (``checkpoint_time`` and one
  value per instrument, ``task_duration_seconds_count``/``_sum`` for the histogram).

So AsyncFlow's own plotting scripts read it unchanged, and ``timeline`` reads it too.
Events are written once per loop turn (one ``write`` for the turn's events). A
write that fails (a full disk, a file size limit) stops the file, never the run:
one warning, the session is marked degraded (``summary()["degraded"]``), later
lines are dropped.
:func:`define_event` and :func:`make_event` make events of your own, as RHAPSODY's do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from .manager import TelemetryEvent

__all__ = ["CheckpointWriter", "SpanQueue", "checkpoint_file", "define_event", "make_event"]

log = logging.getLogger("asyncflow_graph.telemetry")

SUFFIX = ".telemetry.jsonl"
#: optional fields of our event type, left out of a line when they are not set
_OPTIONAL = ("duration_seconds", "error_type")


def checkpoint_file(path: str | os.PathLike[str], session_id: str, started: float) -> Path:
    p = Path(path)
    if p.suffix == ".jsonl":
        return p
    return p / f"{session_id}.{int(started)}{SUFFIX}"


class SpanQueue(SpanProcessor):
    """Finished spans waiting to be written (the writer drains it each turn)."""

    def __init__(self) -> None:
        self.spans: deque[ReadableSpan] = deque()

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class CheckpointWriter:
    """A telemetry subscriber writing the checkpoint file (see the module doc)."""

    def __init__(
        self,
        path: Path,
        spans: SpanQueue | None = None,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        #: why the file stopped before its end (None while every line was written)
        self.degraded: str | None = None
        self._on_error = on_error
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._lines: list[str] = []
        self._spans = spans
        self._scheduled = False

    def __call__(self, event: Any) -> None:
        try:
            self._lines.append(json.dumps(event_line(event), default=str))
        except (TypeError, ValueError):
            return  # not an event we can describe: skipped, as RHAPSODY does
        if not self._scheduled:
            import asyncio

            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._spans is not None:
            spans = self._spans.spans
            self._lines.extend(json.dumps(span_line(spans.popleft())) for _ in range(len(spans)))
        if self._lines and not self._file.closed:
            try:
                self._file.write("\n".join(self._lines) + "\n")
                self._file.flush()
            except OSError as exc:
                self._fail(exc)
        self._lines = []

    def _fail(self, exc: OSError) -> None:
        """Stop writing, once: the run goes on without its checkpoint."""
        self.degraded = f"telemetry checkpoint {self.path} stopped: {type(exc).__name__}: {exc}"
        log.warning(
            "telemetry degraded: %s; the run goes on, later events are not written",
            self.degraded,
        )
        with suppress(OSError):  # closing retries the write that just failed
            self._file.close()
        if self._on_error is not None:
            self._on_error(self.degraded)

    def write_metrics(self, metrics: Any) -> None:
        snapshot: dict[str, Any] = {"checkpoint_time": time.time()}
        for rm in getattr(metrics, "resource_metrics", ()):
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = list(metric.data.data_points)
                    if not points:
                        continue
                    if hasattr(points[0], "value"):
                        snapshot[metric.name] = sum(p.value for p in points)
                    else:  # a histogram
                        snapshot[f"{metric.name}_count"] = sum(p.count for p in points)
                        snapshot[f"{metric.name}_sum"] = sum(p.sum for p in points)
        snapshot["section"] = "metric"
        self._lines.append(json.dumps(snapshot, default=str))

    def close(self) -> None:
        self.flush()
        with suppress(OSError):
            self._file.close()


def event_line(event: Any) -> dict[str, Any]:
    """An event (ours, RHAPSODY's or a dataclass of your own) as a JSON line."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        raise TypeError(f"not an event: {event!r}")
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    if isinstance(event, TelemetryEvent):
        for name in _OPTIONAL:
            if data.get(name) is None:
                data.pop(name, None)
    data.setdefault("trace_id", None)
    data.setdefault("span_id", None)
    data["name"] = data.get("event_type")
    data["section"] = "event"
    return data


def span_line(s: ReadableSpan) -> dict[str, Any]:
    start, end = s.start_time, s.end_time
    return {
        "name": s.name,
        "span_id": hex(s.context.span_id) if s.context else None,
        "trace_id": hex(s.context.trace_id) if s.context else None,
        "parent_span_id": hex(s.parent.span_id) if s.parent else None,
        "start_ns": start,
        "end_ns": end,
        "start_time_s": start / 1e9 if start else None,
        "end_time_s": end / 1e9 if end else None,
        "duration_ms": round((end - start) / 1e6, 3) if start and end else None,
        "status_code": s.status.status_code.name,
        "status_description": s.status.description or None,
        "attributes": {k: _plain(v) for k, v in (s.attributes or {}).items()},
        "section": "span",
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def define_event(name: str, **fields: type) -> type[TelemetryEvent]:
    """A custom event type (RHAPSODY's ``define_event``): ``name`` needs a dot
    (``"etl.StageTimer"``), ``fields`` are its own fields and their types."""
    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"a custom event name needs a dot, like 'etl.StageTimer'; got {name!r}")
    own = [(k, t, dataclasses.field(default=None)) for k, t in fields.items()]
    cls = dataclasses.make_dataclass(
        name.replace(".", "_"), own, bases=(TelemetryEvent,), frozen=True
    )
    cls.event_name = name  # type: ignore[attr-defined]
    return cls


def make_event(cls: type[TelemetryEvent], *, session_id: str, backend: str, **values: Any) -> Any:
    """An instance of ``cls`` (from :func:`define_event`) stamped now."""
    now = time.time()
    name = getattr(cls, "event_name", cls.__name__)
    return cls(
        event_id=uuid.uuid4().hex,
        event_type=name,
        event_time=values.pop("event_time", now),
        emit_time=now,
        session_id=session_id,
        backend=backend,
        **values,
    )

"""The JSONL lifecycle log of a run, and its reader.

One JSON object per line, written as the run goes: every line goes to the OS the
moment its event happens (an unbuffered file, one ``write`` per hook call), so a
crashed or killed run loses at most a line being written, and the reader skips a
torn last line. Lines (``t`` is wall-clock seconds):

* ``{"event": "session", "t", "session_id", "backends": {name: {"slots": n}}, "format": 1}``
* ``{"event": "created", "t", "key", "name", "kind", "deps", "block", "backend",
  "workflow_id", "partition"}``
* ``{"event": "submitted" | "running" | "done", "t", "key", "backend", "workflow_id",
  "partition"}`` (a retried task is submitted again; a task served from the result
  cache is submitted with ``"cached": true`` and never runs)
* ``failed`` adds ``"error_type", "error"``; ``cancelled`` adds ``"message"``
* ``{"event": "closed", "t"}`` when the log is closed.

A write that fails (a full disk, a file size limit, a vanished file system) stops
the log, never the run: one warning names the file and the error, the log is
marked :attr:`EventLog.degraded` (``summary()`` of a telemetry session shows it),
and every later event is dropped. The lines written before stay readable.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compiler.plan import Plan, Unit
from ..executor.events import RunObserver
from ..protocol import CACHE_BACKEND, TaskState

if TYPE_CHECKING:
    from ..executor.events import ObservedEngine

__all__ = ["EventLog", "EventRecord", "TaskRecord", "load_tasks", "read_events", "record_events"]

log = logging.getLogger("asyncflow_graph.telemetry")

FORMAT = 1
LIFECYCLE = ("created", "submitted", "running", "done", "failed", "cancelled")
_MAX_TEXT = 500


def _q(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


class EventLog(RunObserver):
    """A run observer writing the JSONL log (attach with ``engine.add_observer``
    or :func:`record_events`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        engine: ObservedEngine | None = None,
        on_error: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        #: why the log stopped before its end (None while every line was written)
        self.degraded: str | None = None
        self._on_error = on_error
        #: key -> (quoted key, the line's tail: backend, workflow id, partition)
        self._keys: dict[str, tuple[str, str]] = {}
        self._quoted: dict[str | None, str] = {}
        header: dict[str, Any] = {"event": "session", "t": time.time(), "format": FORMAT}
        if engine is not None:
            header["session_id"] = engine.uid
            header["backends"] = {n: {"slots": _slots(b)} for n, b in engine.backends.items()}
        self._write(json.dumps(header) + "\n")

    def _write(self, text: str) -> None:
        if self._file.closed:
            return
        data = memoryview(text.encode())
        try:
            while data:
                # A short write (the disk filled up mid-line): the rest fails with
                # the system's reason, or goes through.
                written = self._file.write(data)
                if not written:
                    raise OSError("no byte could be written")
                data = data[written:]
        except OSError as exc:
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, why: str) -> None:
        """Stop logging, once: the run goes on without its event log."""
        self.degraded = f"event log {self.path} stopped: {why}"
        log.warning(
            "telemetry degraded: %s; the run goes on, later events are not logged", self.degraded
        )
        with suppress(OSError):  # unbuffered: closing has nothing left to flush
            self._file.close()
        if self._on_error is not None:
            self._on_error(self.degraded)

    def _quote(self, text: str | None) -> str:
        q = self._quoted.get(text)
        if q is None:
            q = self._quoted[text] = _q(text)
        return q

    def _key(self, key: str) -> tuple[str, str]:
        known = self._keys.get(key)
        return known if known is not None else (_q(key), "}\n")

    def _ended(self, key: str) -> tuple[str, str]:
        known = self._keys.pop(key, None)
        return known if known is not None else (_q(key), "}\n")

    # -- hooks ---------------------------------------------------------------------------

    def on_plan(self, plan: Plan) -> None:
        t = f"{time.time():.6f}"
        nodes, keys, quote = plan.nodes, self._keys, self._quote
        lines: list[str] = []
        for p in plan.partitions:
            qb = quote(p.backend)
            for u in p.units:
                for k in u.keys:
                    node = nodes[k]
                    qk = _q(k)
                    tail = (
                        f',"backend":{qb},"workflow_id":{quote(node.workflow_id)},'
                        f'"partition":{p.id}}}\n'
                    )
                    keys[k] = (qk, tail)
                    deps = ",".join(map(_q, node.deps))
                    lines.append(
                        f'{{"event":"created","t":{t},"key":{qk},"name":{quote(node.name)},'
                        f'"kind":"{node.kind.value}","deps":[{deps}],'
                        f'"block":{quote(node.parent)}{tail}'
                    )
        self._write("".join(lines))

    def on_submitted(self, backend: str, units: Sequence[Unit]) -> None:
        t = f"{time.time():.6f}"
        key = self._key
        lines = []
        # a unit of the @cache backend is a hit: nothing runs, its result is loaded
        mark = ',"cached":true' if backend == CACHE_BACKEND else ""
        for u in units:
            for k in u.keys:
                qk, tail = key(k)
                lines.append(f'{{"event":"submitted","t":{t},"key":{qk}{mark}{tail}')
        self._write("".join(lines))

    def on_running(self, key: str) -> None:
        qk, tail = self._key(key)
        self._write(f'{{"event":"running","t":{time.time():.6f},"key":{qk}{tail}')

    def on_done(self, key: str, value: Any) -> None:
        qk, tail = self._ended(key)
        self._write(f'{{"event":"done","t":{time.time():.6f},"key":{qk}{tail}')

    def on_failed(self, key: str, exc: BaseException) -> None:
        qk, tail = self._ended(key)
        error = _q(f"{type(exc).__name__}: {exc}"[:_MAX_TEXT])
        self._write(
            f'{{"event":"failed","t":{time.time():.6f},"key":{qk},'
            f'"error_type":{_q(type(exc).__name__)},"error":{error}{tail}'
        )

    def on_cancelled(self, key: str, msg: str | None) -> None:
        qk, tail = self._ended(key)
        message = _q(None if msg is None else str(msg)[:_MAX_TEXT])
        self._write(
            f'{{"event":"cancelled","t":{time.time():.6f},"key":{qk},"message":{message}{tail}'
        )

    def close(self) -> None:
        """Write the closing line and close the file (safe to call twice)."""
        if not self._file.closed:
            self._write(f'{{"event":"closed","t":{time.time():.6f}}}\n')
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slots(backend: Any) -> int | None:
    """How many tasks the backend runs at once, when it says (for utilisation)."""
    caps = getattr(backend, "capabilities", None)
    n = getattr(caps, "max_concurrency", None)
    if n is None:  # a concurrent.futures pool: its documented max_workers argument
        n = getattr(getattr(backend, "executor", None), "_max_workers", None)
    return n if isinstance(n, int) else None


@contextmanager
def record_events(engine: ObservedEngine, path: str | os.PathLike[str]) -> Iterator[EventLog]:
    """Write ``engine``'s lifecycle events to ``path`` while the block runs::

    with record_events(flow, "run.jsonl"):
        await asyncio.gather(*tasks)
    """
    event_log = EventLog(path, engine=engine)
    engine.add_observer(event_log)
    try:
        yield event_log
    finally:
        engine.remove_observer(event_log)
        event_log.close()


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One line of the log (``data`` is the whole JSON object)."""

    event: str
    t: float
    key: str | None = None
    backend: str | None = None
    workflow_id: str | None = None
    partition: int | None = None
    name: str | None = None
    kind: str | None = None
    block: str | None = None
    deps: tuple[str, ...] = ()
    error_type: str | None = None
    error: str | None = None
    message: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def read_events(path: str | os.PathLike[str]) -> list[EventRecord]:
    """Load a log written by :class:`EventLog`, or a RHAPSODY-format telemetry
    checkpoint (its task lifecycle events). A torn last line (the run died while
    writing it) is skipped; a bad line elsewhere raises ``ValueError``."""
    records: list[EventRecord] = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last:
                log.warning("%s: skipping a torn last line", path)
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line: {exc}") from None
        record = _from_rhapsody(obj) if "section" in obj else _record(obj)
        if record is not None:
            records.append(record)
    return records


#: RHAPSODY event types -> our lifecycle events
_RHAPSODY_EVENTS = {
    "SessionStarted": "session",
    "TaskCreated": "created",
    "TaskSubmitted": "submitted",
    "TaskStarted": "running",
    "TaskCompleted": "done",
    "TaskFailed": "failed",
    "TaskCanceled": "cancelled",
    "SessionEnded": "closed",
}


def _from_rhapsody(obj: dict[str, Any]) -> EventRecord | None:
    """A line of a RHAPSODY-format checkpoint (``start_telemetry(checkpoint_path=)``,
    or RHAPSODY's own) as one of our events; spans, metrics and other events: None."""
    if obj.get("section") != "event":
        return None
    event = _RHAPSODY_EVENTS.get(str(obj.get("event_type")))
    if event is None:
        return None
    attrs = obj.get("attributes") or {}
    return EventRecord(
        event=event,
        t=float(obj.get("event_time") or 0.0),
        key=obj.get("task_id"),
        backend=obj.get("backend") if obj.get("task_id") is not None else None,
        workflow_id=attrs.get("asyncflow.workflow_id"),
        name=attrs.get("executable"),
        kind=attrs.get("task_type"),
        deps=tuple(attrs.get("depends_on") or ()),
        error_type=obj.get("error_type"),
        error=obj.get("error_type"),
        data=obj,
    )


def _record(obj: dict[str, Any]) -> EventRecord:
    return EventRecord(
        event=str(obj.get("event")),
        t=float(obj.get("t", 0.0)),
        key=obj.get("key"),
        backend=obj.get("backend"),
        workflow_id=obj.get("workflow_id"),
        partition=obj.get("partition"),
        name=obj.get("name"),
        kind=obj.get("kind"),
        block=obj.get("block"),
        deps=tuple(obj.get("deps") or ()),
        error_type=obj.get("error_type"),
        error=obj.get("error"),
        message=obj.get("message"),
        data=obj,
    )


@dataclass(slots=True)
class TaskRecord:
    """One task's life, assembled from its events (times in wall-clock seconds;
    ``state`` is DONE, FAILED, CANCELLED or OPEN when the log has no ending)."""

    key: str
    name: str = ""
    kind: str = ""
    backend: str = ""
    workflow_id: str | None = None
    block: str | None = None
    partition: int | None = None
    deps: tuple[str, ...] = ()
    created: float | None = None
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    state: str = "OPEN"
    error: str | None = None
    submissions: int = 0
    cached: bool = False  # served from the result cache


#: how a record ends, by its last event (a record never ended stays "OPEN")
_ENDINGS = {"done": TaskState.DONE, "failed": TaskState.FAILED, "cancelled": TaskState.CANCELLED}


def load_tasks(source: str | os.PathLike[str] | Iterable[EventRecord]) -> dict[str, TaskRecord]:
    """Per-task records of a log (a path or the events :func:`read_events` gave)."""
    events = read_events(source) if isinstance(source, str | os.PathLike) else source
    tasks: dict[str, TaskRecord] = {}
    for e in events:
        if e.key is None:
            continue
        task = tasks.get(e.key)
        if task is None:
            task = tasks[e.key] = TaskRecord(e.key)
        if e.backend is not None:
            task.backend = e.backend
        if e.workflow_id is not None:
            task.workflow_id = e.workflow_id
        if e.partition is not None:
            task.partition = e.partition
        _apply(task, e)
    return tasks


def _apply(task: TaskRecord, e: EventRecord) -> None:
    if e.event == "created":
        task.name, task.kind = e.name or "", e.kind or ""
        task.block, task.deps, task.created = e.block, e.deps, e.t
    elif e.event == "submitted":
        task.submitted = e.t
        task.submissions += 1
        task.started = None  # a retry starts over
        task.cached = bool(e.data.get("cached"))
    elif e.event == "running":
        task.started = e.t
    elif e.event in _ENDINGS:
        task.ended = e.t
        task.state = _ENDINGS[e.event]
        task.error = e.error if e.event == "failed" else e.message

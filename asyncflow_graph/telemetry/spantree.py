"""The span tree of one telemetry session: session -> workflow -> block -> task.

The parent of a span comes from the graph (the node's enclosing block, else its
workflow id), never from the ambient OTel context, so concurrent scopes and engines
cannot leak into each other. Task spans run from creation to the terminal event, as
in AsyncFlow, and carry RHAPSODY's attribute names (``session_id``, ``task_id``,
``executable``, ``task_type``, ``backend``, ``status``, ``error_type``) plus
``asyncflow.workflow_id``, ``asyncflow.state``, ``asyncflow.partition_id`` and
``asyncflow.block_id``. Failed spans have an ERROR status and an ``exception`` event.

Cost: task spans are the hot path (one per task), so they are recorded, not opened:
at the task's end one finished span is built with its real start and end times and
handed to the span processors' ``on_end`` (what exporters use), skipping the SDK's
per-span locking, attribute validation and sampler call (task spans follow the
session span's sampling decision). ``on_start`` is therefore not called for task
spans; session, workflow and block spans are ordinary SDK spans.

A successful task span is a :class:`ReadableSpan` whose fields shared by every task
span of the session live on a per-session subclass, so building one sets five
fields instead of thirteen, and its ``SpanContext`` is made without re-validating
ids the SDK's own generator made. Both shortcuts rest on the SDK's field layout:
:func:`_layout_known` checks it once at import and, should a future SDK differ,
the plain constructors are used.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from ..compiler.plan import ENGINE_BACKEND
from ..protocol import TaskState
from ..spec import Node
from ..version import __version__
from .observer import CANCELLED, DONE, FAILED, OPEN

__all__ = ["SCOPE", "SpanTree"]

SCOPE = "asyncflow_graph"
_STATUS = {DONE: "completed", FAILED: "failed", CANCELLED: "canceled", OPEN: "unfinished"}
_STATE = {DONE: "DONE", FAILED: "FAILED", CANCELLED: "CANCELLED", OPEN: "UNFINISHED"}
_UNSET = Status(StatusCode.UNSET)
_TS = DEFAULT_TRACE_STATE

#: the fields ReadableSpan.__init__ sets, as of the SDK versions we know
_SPAN_FIELDS = frozenset(
    {
        "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope",
        "_parent", "_start_time", "_end_time", "_attributes", "_events", "_links",
        "_resource", "_status",
    }
)  # fmt: skip


class _TaskSpan(ReadableSpan):
    """A successful task span: what differs per task is set here, the rest are
    class attributes of a per-session subclass (see :meth:`SpanTree.__init__`).
    Its attributes are built when first read (an exporter encoding the span), not
    on the engine's hot path."""

    _name = "task"
    _kind = SpanKind.INTERNAL
    _instrumentation_info = None
    _events: tuple[Event, ...] = ()
    _links = ()
    _status = _UNSET
    _sid = ""  # set by the per-session subclass
    _attrs: dict[str, Any] | None = None

    def __init__(
        self, context: SpanContext, parent: SpanContext, node: Node, backend: str, pid: int,
        start: int, end: int,
    ) -> None:  # fmt: skip
        # No super().__init__(): it would set the eight shared fields again.
        self._context = context
        self._parent = parent
        self._node = node
        self._backend = backend
        self._pid = pid
        self._start_time = start
        self._end_time = end

    @property
    def _attributes(self) -> dict[str, Any]:
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = _task_attributes(self._node, self._backend, self._pid, self._sid)
        return attrs

    @_attributes.setter
    def _attributes(self, value: dict[str, Any]) -> None:
        self._attrs = value


def _layout_known() -> bool:
    """Whether this SDK's ReadableSpan and SpanContext are laid out as the
    shortcuts assume (checked once; otherwise the plain constructors are used)."""
    flags = TraceFlags(TraceFlags.SAMPLED)

    class Probe(ReadableSpan):
        _attributes = property(lambda self: {"probe": 1}, lambda self, value: None)

    try:
        fields = set(vars(ReadableSpan("probe")))
        ctx = tuple.__new__(SpanContext, (1, 2, False, flags, DEFAULT_TRACE_STATE, True))
        lazy = Probe("probe").attributes == {"probe": 1}  # read through _attributes
        return (
            fields <= _SPAN_FIELDS
            and lazy
            and ctx == SpanContext(1, 2, False, flags)
            and ctx.is_valid
        )
    except Exception:
        return False


_FAST = _layout_known()


class SpanTree:
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
        self.scopes: dict[str, int] = {}  # workflow id -> workflow_scope()s open now
        self.open_members: dict[str, int] = {}  # workflow id -> direct members not ended
        self.exiting: set[str] = set()  # scopes left, span waiting for its members
        self.blocks: dict[str, Any] = {}  # block key -> open SDK span
        self.block_ctx: dict[str, SpanContext] = {}
        self.task_span: Any = None
        if _FAST and isinstance(provider.id_generator, RandomIdGenerator):
            # ids from the SDK's own generator are valid: no need to check each
            self.task_span = type(
                "TaskSpan",
                (_TaskSpan,),
                {"_resource": self.resource, "_instrumentation_scope": self.scope, "_sid": sid},
            )

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

    def workflow_entered(self, wid: str, t: int) -> None:
        """A ``workflow_scope(wid)`` was entered: its span opens now."""
        self.scopes[wid] = self.scopes.get(wid, 0) + 1
        self.exiting.discard(wid)
        if wid not in self.workflows:
            self.wf_ctx.pop(wid, None)  # a new scope of an id used before: a new span
            self.workflow(wid, t)

    def workflow_exited(self, wid: str, t: int) -> None:
        """The last open ``workflow_scope(wid)`` was left: its span ends now, or,
        when tasks created inside are still open, when the last of them ends (so
        the span covers its members). Its context stays known: members ending
        later are still its children."""
        left = self.scopes.get(wid, 0) - 1
        if left > 0:
            self.scopes[wid] = left
            return
        self.scopes.pop(wid, None)
        if self.open_members.get(wid):
            self.exiting.add(wid)
        else:
            self._end_workflow(wid, t)

    def member_planned(self, wid: str, t: int) -> None:
        """A direct member of workflow ``wid`` (a task or block outside any block)
        was compiled: the workflow's span is open (opened now if new) until it ends."""
        if wid not in self.wf_ctx:
            self.workflow(wid, t)
        self.open_members[wid] = self.open_members.get(wid, 0) + 1

    def _member_ended(self, wid: str, end: int) -> None:
        if end > self.wf_end.get(wid, 0):
            self.wf_end[wid] = end
        left = self.open_members.get(wid, 0) - 1
        if left > 0:
            self.open_members[wid] = left
            return
        self.open_members.pop(wid, None)
        if wid in self.exiting:
            self.exiting.discard(wid)
            self._end_workflow(wid, end)

    def _end_workflow(self, wid: str, t: int) -> None:
        span = self.workflows.pop(wid, None)
        if span is not None:
            self.wf_end.pop(wid, None)
            span.end(end_time=max(t, span.start_time or 0))

    def parent_of(self, node: Node, start: int, end: int, ending: bool = True) -> SpanContext:
        """The span context of ``node``'s block, else of its workflow (opened at
        ``start`` if new), else the session's. ``ending``: ``node`` ends at ``end``
        (a direct member of a workflow that may end with it)."""
        if node.parent is not None:
            return self.block_ctx.get(node.parent, self.session_ctx)
        wid = node.workflow_id
        if wid is None:
            return self.session_ctx
        ctx = self.wf_ctx.get(wid) or self.workflow(wid, start)
        if ending:
            self._member_ended(wid, end)
        return ctx

    def block_started(self, node: Node, pid: int, t: int) -> None:
        attrs = _attributes(node, ENGINE_BACKEND, pid, self.sid)
        attrs["asyncflow.workflow_id"] = node.key  # as AsyncFlow: a block is a workflow
        if node.workflow_id is not None:
            attrs["asyncflow.parent_workflow_id"] = node.workflow_id
        parent = self.parent_of(node, t, t, ending=False)
        span = self.tracer.start_span(
            "block",
            context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent)),
            start_time=t,
            attributes=attrs,
        )
        self.blocks[node.key] = span
        self.block_ctx[node.key] = span.get_span_context()

    def tasks_done(self, done: Sequence[tuple[Node, str, int, int]], end: int) -> None:
        """Spans of tasks that ended done together at ``end``: ``(node, backend,
        partition id, start)`` each. One loop, its lookups hoisted: the common end."""
        make = self.task_span
        if make is None:
            for node, backend, pid, start in done:
                self.task_ended(node, backend, pid, start, end, DONE, None)
            return
        on_end, new_id, blocks, session = self.on_end, self.new_id, self.blocks, self.session_ctx
        trace_id, flags, new = self.trace_id, self.flags, tuple.__new__
        for node, backend, pid, start in done:
            if backend == ENGINE_BACKEND and node.key in blocks:
                self._end_block(blocks.pop(node.key), node, end, DONE, None)
                continue
            if node.parent is None and node.workflow_id is None:
                parent = session
            else:
                parent = self.parent_of(node, start, end)
            context = new(SpanContext, (trace_id, new_id(), False, flags, _TS, True))
            on_end(make(context, parent, node, backend, pid, start, end))

    def task_ended(
        self, node: Node, backend: str, pid: int, start: int, end: int, outcome: TaskState, err: Any
    ) -> None:
        if backend == ENGINE_BACKEND and node.key in self.blocks:
            self._end_block(self.blocks.pop(node.key), node, end, outcome, err)
            return
        if outcome == DONE and self.task_span is not None:
            self.tasks_done(((node, backend, pid, start),), end)
            return
        attrs = _task_attributes(node, backend, pid, self.sid, outcome)
        parent = self.parent_of(node, start, end)
        context = SpanContext(self.trace_id, self.new_id(), False, self.flags)
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
        self.on_end(span)

    def _outcome(
        self, attrs: dict[str, Any], outcome: TaskState, err: Any, t: int
    ) -> tuple[Status, tuple[Event, ...]]:
        if outcome == FAILED and isinstance(err, BaseException):
            attrs["error_type"] = type(err).__name__
            event = Event("exception", _exception_attributes(err), t)
            return Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"), (event,)
        if outcome == CANCELLED and err:
            attrs["asyncflow.cancel_message"] = str(err)
        return _UNSET, ()

    def _end_block(self, span: Any, node: Node, end: int, outcome: TaskState, err: Any) -> None:
        attrs: dict[str, Any] = {}
        status: Status = _UNSET
        events: tuple[Event, ...] = ()
        if outcome is not DONE:
            status, events = self._outcome(attrs, outcome, err, end)
        attrs["status"] = _STATUS[outcome]
        attrs["asyncflow.state"] = _STATE[outcome]
        span.set_attributes(attrs)
        for event in events:
            span.add_event(event.name, event.attributes, event.timestamp)
        span.set_status(status)
        span.end(end_time=end)
        self.parent_of(node, end, end)  # a block's end may end its workflow

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
        "task_type": node.kind.value,  # the plain str (Enum.value is slower)
        "backend": backend,
        "asyncflow.partition_id": pid,
    }
    if node.parent is not None:
        attrs["asyncflow.block_id"] = node.parent
    return attrs


def _task_attributes(
    node: Node, backend: str, pid: int, sid: str, outcome: TaskState = DONE
) -> dict[str, Any]:
    attrs = _attributes(node, backend, pid, sid)
    attrs["status"] = _STATUS[outcome]
    attrs["asyncflow.state"] = _STATE[outcome]
    if node.workflow_id is not None:
        attrs["asyncflow.workflow_id"] = node.workflow_id
    return attrs


def _exception_attributes(exc: BaseException) -> dict[str, str]:
    return {
        "exception.type": type(exc).__qualname__,
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        "exception.escaped": "False",
    }

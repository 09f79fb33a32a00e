"""start_telemetry(): OpenTelemetry spans and metrics, AsyncFlow events, the manager.

Spans are read from the real SDK's InMemorySpanExporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import Backend
from asyncflow_graph.errors import DependencyFailureError

T = 5


async def traced(flow, **kwargs):
    exporter = InMemorySpanExporter()
    tel = await flow.start_telemetry(span_processors=[SimpleSpanProcessor(exporter)], **kwargs)
    return tel, exporter


def by_task(spans):
    return {s.attributes["task_id"]: s for s in spans if "task_id" in s.attributes}


def one(spans, name, **attrs):
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attrs.items())
    ]
    assert len(found) == 1, (name, attrs, [(s.name, dict(s.attributes)) for s in spans])
    return found[0]


def parent_id(span):
    return span.parent.span_id if span.parent is not None else None


# --------------------------------------------------------------------------- hierarchy


async def test_task_spans_in_workflow_scope(flow):
    tel, exporter = await traced(flow)

    @flow.function_task
    async def inc(x):
        return x + 1

    async with flow.workflow_scope("wf-1"):
        a = inc(1)
        b = inc(a)
    outside = inc(10)
    assert await b == 3 and await outside == 11
    await tel.stop()

    spans = exporter.get_finished_spans()
    session = one(spans, "session")
    workflow = one(spans, "workflow", **{"asyncflow.workflow_id": "wf-1"})
    tasks = by_task(spans)
    assert parent_id(session) is None
    assert parent_id(workflow) == session.context.span_id
    for h in (a, b):
        span = tasks[h.key]
        assert span.name == "task"
        assert parent_id(span) == workflow.context.span_id
        attrs = span.attributes
        assert attrs["asyncflow.workflow_id"] == "wf-1"
        assert attrs["session_id"] == flow.uid
        assert attrs["executable"] == "inc"
        assert attrs["task_type"] == "function"
        assert attrs["backend"] == "default"
        assert attrs["status"] == "completed"
        assert attrs["asyncflow.state"] == "DONE"
        assert isinstance(attrs["asyncflow.partition_id"], int)
        assert span.status.status_code is StatusCode.UNSET
        assert span.start_time <= span.end_time
        assert workflow.start_time <= span.start_time and span.end_time <= workflow.end_time
    assert parent_id(tasks[outside.key]) == session.context.span_id
    assert "asyncflow.workflow_id" not in tasks[outside.key].attributes
    assert {s.context.trace_id for s in spans} == {session.context.trace_id}


async def test_blocks_and_nested_blocks(flow):
    tel, exporter = await traced(flow)
    keys = {}

    @flow.function_task
    async def inc(x):
        return x + 1

    @flow.block
    async def inner(x):
        h = inc(x)
        keys["inner_task"] = h.key
        return await h

    @flow.block
    async def outer(x):
        h = inc(x)
        keys["outer_task"] = h.key
        nested = inner(await h)
        keys["inner"] = nested.key
        return await nested

    async with flow.workflow_scope("campaign"):
        blk = outer(0)
    assert await blk == 2
    await tel.stop()

    spans = exporter.get_finished_spans()
    tasks = by_task(spans)
    workflow = one(spans, "workflow", **{"asyncflow.workflow_id": "campaign"})
    outer_span, inner_span = tasks[blk.key], tasks[keys["inner"]]
    assert outer_span.name == inner_span.name == "block"
    assert parent_id(outer_span) == workflow.context.span_id
    assert parent_id(inner_span) == outer_span.context.span_id
    assert parent_id(tasks[keys["outer_task"]]) == outer_span.context.span_id
    assert parent_id(tasks[keys["inner_task"]]) == inner_span.context.span_id
    # As in AsyncFlow, a block's members carry the block's uid as workflow id.
    assert tasks[keys["outer_task"]].attributes["asyncflow.workflow_id"] == blk.key
    assert tasks[keys["inner_task"]].attributes["asyncflow.workflow_id"] == keys["inner"]
    assert tasks[keys["inner_task"]].attributes["asyncflow.block_id"] == keys["inner"]
    assert outer_span.attributes["asyncflow.parent_workflow_id"] == "campaign"
    assert outer_span.attributes["task_type"] == "block"
    assert outer_span.attributes["status"] == "completed"
    assert outer_span.start_time <= inner_span.start_time <= inner_span.end_time
    assert inner_span.end_time <= outer_span.end_time


async def test_concurrent_scopes_do_not_leak(flow):
    tel, exporter = await traced(flow)
    gates = {w: asyncio.Event() for w in ("wf-a", "wf-b")}
    created: dict[str, list[str]] = {"wf-a": [], "wf-b": []}

    @flow.function_task
    async def step(x):
        return x + 1

    async def workflow(wid, other):
        async with flow.workflow_scope(wid):
            for i in range(3):
                h = step(i)
                created[wid].append(h.key)
                await h
                gates[wid].set()
                await asyncio.wait_for(gates[other].wait(), T)  # interleave the scopes

    await asyncio.gather(workflow("wf-a", "wf-b"), workflow("wf-b", "wf-a"))
    await tel.stop()

    spans = exporter.get_finished_spans()
    tasks = by_task(spans)
    for wid, keys in created.items():
        wf = one(spans, "workflow", **{"asyncflow.workflow_id": wid})
        for key in keys:
            assert parent_id(tasks[key]) == wf.context.span_id
            assert tasks[key].attributes["asyncflow.workflow_id"] == wid


async def test_two_engines_do_not_leak(tmp_path):
    flows = [
        await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
        for _ in range(2)
    ]
    try:
        traces = [await traced(f) for f in flows]
        handles = []
        for i, f in enumerate(flows):

            @f.function_task
            async def work(x):
                return x

            async with f.workflow_scope("shared-name"):
                handles.append([work(i) for _ in range(3)])
        await asyncio.gather(*(h for hs in handles for h in hs))
        for tel, _ in traces:
            await tel.stop()
    finally:
        for f in flows:
            await f.shutdown()

    trace_ids = []
    for f, (_, exporter), hs in zip(flows, traces, handles, strict=True):
        spans = exporter.get_finished_spans()
        assert {s.attributes.get("session_id") for s in spans} == {f.uid}
        assert set(by_task(spans)) == {h.key for h in hs}
        wf = one(spans, "workflow", **{"asyncflow.workflow_id": "shared-name"})
        assert all(parent_id(s) == wf.context.span_id for s in by_task(spans).values())
        trace_ids.append({s.context.trace_id for s in spans})
    assert len(trace_ids[0]) == len(trace_ids[1]) == 1
    assert trace_ids[0] != trace_ids[1]


# --------------------------------------------------------------------------- outcomes


async def test_failed_spans_carry_the_error(flow):
    tel, exporter = await traced(flow)

    @flow.function_task
    async def explode():
        raise ValueError("sensor offline")

    @flow.function_task
    async def after(x):
        return x

    bad = explode()
    dependent = after(bad)
    with pytest.raises(ValueError):
        await bad
    with pytest.raises(DependencyFailureError):
        await dependent
    await tel.stop()

    tasks = by_task(exporter.get_finished_spans())
    span = tasks[bad.key]
    assert span.status.status_code is StatusCode.ERROR
    assert "sensor offline" in span.status.description
    assert span.attributes["status"] == "failed"
    assert span.attributes["asyncflow.state"] == "FAILED"
    assert span.attributes["error_type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "sensor offline"
    assert "sensor offline" in event.attributes["exception.stacktrace"]
    dep = tasks[dependent.key]
    assert dep.status.status_code is StatusCode.ERROR
    assert dep.attributes["error_type"] == "DependencyFailureError"


async def test_cancelled_and_unfinished_spans(flow):
    tel, exporter = await traced(flow)
    gate, started = asyncio.Event(), asyncio.Semaphore(0)

    @flow.function_task
    async def wait():
        started.release()
        await gate.wait()

    cancelled, unfinished = wait(), wait()
    for _ in range(2):
        await asyncio.wait_for(started.acquire(), T)
    cancelled.cancel("changed my mind")
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await tel.stop()  # `unfinished` is still running
    gate.set()
    await unfinished

    tasks = by_task(exporter.get_finished_spans())
    assert tasks[cancelled.key].attributes["status"] == "canceled"
    assert tasks[cancelled.key].attributes["asyncflow.state"] == "CANCELLED"
    assert tasks[cancelled.key].attributes["asyncflow.cancel_message"] == "changed my mind"
    assert tasks[unfinished.key].attributes["status"] == "unfinished"


# --------------------------------------------------------------------------- events


async def test_asyncflow_events(flow):
    tel = await flow.start_telemetry()
    events = []
    seen_async = []
    tel.subscribe(events.append)

    async def async_subscriber(event):
        seen_async.append(event.event_type)

    tel.subscribe(async_subscriber)

    @flow.function_task
    async def load():
        return 1

    @flow.function_task
    async def explode(x):
        raise RuntimeError("no")

    async with flow.workflow_scope("exp-1"):
        first = load()
        bad = explode(first)
    with pytest.raises(RuntimeError):
        await bad
    tel.emit(tel.event("campaign.ResourceAssigned", task_id=first.key, attributes={"gpu": 0}))
    await tel.stop()

    assert events[0].event_type == "SessionStarted"
    assert events[-1].event_type == "SessionEnded"
    of_first = [e.event_type for e in events if e.task_id == first.key]
    assert of_first == [
        "TaskCreated",
        "asyncflow.TaskResolved",
        "TaskQueued",
        "TaskSubmitted",
        "TaskStarted",
        "TaskCompleted",
        "campaign.ResourceAssigned",
    ]
    created = next(e for e in events if e.task_id == bad.key and e.event_type == "TaskCreated")
    assert created.session_id == flow.uid
    assert created.backend == "default"
    assert created.attributes["executable"] == "explode"
    assert created.attributes["task_type"] == "function"
    assert created.attributes["depends_on"] == [first.key]
    assert created.attributes["asyncflow.workflow_id"] == "exp-1"
    failed = next(e for e in events if e.event_type == "TaskFailed")
    assert failed.task_id == bad.key and failed.error_type == "RuntimeError"
    assert failed.duration_seconds >= 0
    done = next(e for e in events if e.event_type == "TaskCompleted")
    assert done.duration_seconds > 0 and done.event_time <= done.emit_time
    assert len({e.event_id for e in events}) == len(events)
    assert seen_async == [e.event_type for e in events]


async def test_canceled_event_and_unsubscribe(flow):
    tel = await flow.start_telemetry()
    events = []
    tel.subscribe(events.append)
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def wait():
        started.set()
        await gate.wait()

    h = wait()
    await asyncio.wait_for(started.wait(), T)
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h
    await asyncio.sleep(0)  # one loop turn: delivery happens at the end of a turn
    assert events[-1].event_type == "TaskCanceled" and events[-1].task_id == h.key
    tel.unsubscribe(events.append)
    n = len(events)
    await tel.stop()
    assert len(events) == n


# --------------------------------------------------------------------------- metrics


def metric_points(data):
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = list(m.data.data_points)
    return out


async def test_summary_and_metrics(tmp_path):
    reader = InMemoryMetricReader()
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(), NoopExecutionBackend(name="ai")], work_dir=tmp_path
    )
    try:
        tel = await flow.start_telemetry(metric_readers=[reader])

        @flow.function_task
        async def work(x):
            return x

        @flow.function_task(backend="ai")
        async def infer(x):
            return x

        @flow.function_task
        async def explode():
            raise ValueError

        await asyncio.gather(*(work(i) for i in range(4)), infer(1))
        with pytest.raises(ValueError):
            await explode()
        live = metric_points(reader.get_metrics_data())  # the caller's reader, as given
        await tel.stop()
    finally:
        await flow.shutdown()

    summary = tel.summary()
    assert summary["session_id"] == flow.uid
    assert summary["tasks"]["completed"] == 5
    assert summary["tasks"]["failed"] == 1
    assert summary["tasks"]["running"] == 0
    assert summary["backends"]["ai"]["completed"] == 1
    assert summary["duration"]["count"] >= 5

    completed = {p.attributes["backend"]: p.value for p in live["tasks_completed"]}
    assert completed == {"default": 4, "ai": 1}
    durations = {p.attributes["backend"]: p.count for p in live["task_duration_seconds"]}
    assert durations["default"] == 5  # the four and the failed one ran
    depth = {p.attributes["backend"]: p.value for p in live["asyncflow.queue_depth"]}
    assert depth == {"default": 0, "ai": 0}
    states = {
        (p.attributes["backend"], p.attributes["state"]): p.value for p in live["asyncflow.tasks"]
    }
    assert states[("default", "done")] == 4 and states[("default", "failed")] == 1
    after = metric_points(tel.read_metrics())["tasks_failed"]  # still there after stop()
    assert {p.attributes["backend"]: p.value for p in after} == {"default": 1, "ai": 0}


class HoldBackend(Backend):
    """Keeps what it is given until told to run it (reports nothing meanwhile)."""

    def __init__(self, name):
        super().__init__(name)
        self.held = []
        self.arrived = asyncio.Event()

    def submit(self, works):
        self.held.extend(works)
        self.arrived.set()

    def run_one(self):
        work = self.held.pop(0)
        self.context.reporter.running(work.key)
        return work

    def finish(self, work):
        for node in work.nodes:
            self.context.reporter.done(node.key, None)


async def test_queue_depth_and_states_per_backend(tmp_path):
    hold = HoldBackend("hpc")
    flow = await WorkflowEngine.create(backend=hold, work_dir=tmp_path)
    try:
        tel = await flow.start_telemetry()

        @flow.function_task
        def job(i):
            return i

        handles = [job(i) for i in range(3)]
        await asyncio.wait_for(hold.arrived.wait(), T)

        def observe():
            points = metric_points(tel.read_metrics())
            depth = {p.attributes["backend"]: p.value for p in points["asyncflow.queue_depth"]}
            states = {p.attributes["state"]: p.value for p in points["asyncflow.tasks"]}
            return depth["hpc"], states

        assert observe() == (3, {**dict.fromkeys(STATES, 0), "queued": 3})
        running = hold.run_one()
        assert observe() == (2, {**dict.fromkeys(STATES, 0), "queued": 2, "running": 1})
        hold.finish(running)
        assert observe() == (2, {**dict.fromkeys(STATES, 0), "queued": 2, "done": 1})
        while hold.held:
            hold.finish(hold.run_one())
        await asyncio.gather(*handles)
        assert observe() == (0, {**dict.fromkeys(STATES, 0), "done": 3})
        await tel.stop()
    finally:
        await flow.shutdown()


STATES = ("pending", "queued", "running", "done", "failed", "cancelled")


# --------------------------------------------------------------------------- manager


async def test_no_observer_when_telemetry_is_off_or_stopped(flow):
    assert flow._executor.observers.all == ()
    tel, _ = await traced(flow)
    assert len(flow._executor.observers.all) == 1
    await tel.stop()
    await tel.stop()  # twice is fine
    assert flow._executor.observers.all == ()


def test_importing_the_package_imports_no_telemetry_dependency():
    code = (
        "import sys, asyncflow_graph, asyncflow_graph.telemetry; "
        "bad = [m for m in ('opentelemetry', 'rich', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_resource_and_span_scope(flow):
    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "campaign-7"})
    tel = await flow.start_telemetry(
        span_processors=[SimpleSpanProcessor(exporter)], resource=resource, keep_spans=True
    )
    with tel.span_scope("prepare", {"step": "mesh"}) as span:
        span.set_attribute("cells", 10)
    await tel.stop()
    spans = exporter.get_finished_spans()
    assert {s.resource.attributes["service.name"] for s in spans} == {"campaign-7"}
    session = one(spans, "session")
    prepare = one(spans, "prepare", step="mesh", cells=10)
    assert parent_id(prepare) == session.context.span_id
    assert [s.name for s in tel.read_traces()] == [s.name for s in spans]


async def test_default_resource_and_no_processor(flow):
    tel = await flow.start_telemetry(keep_spans=True)

    @flow.function_task
    async def work():
        return 1

    await work()
    await tel.stop()
    spans = tel.read_traces()
    attrs = spans[0].resource.attributes
    assert attrs["service.name"] == "asyncflow_graph"
    assert attrs["session_id"] == flow.uid
    assert [s.name for s in spans] == ["task", "session"]


async def test_started_in_the_middle_of_a_run(flow, caplog):
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def wait():
        started.set()
        await gate.wait()
        return 1

    @flow.function_task
    async def after(x):
        return x + 1

    first = wait()
    second = after(first)  # compiled before telemetry starts, submitted after
    await asyncio.wait_for(started.wait(), T)
    tel, exporter = await traced(flow)
    events = []
    tel.subscribe(events.append)
    gate.set()
    assert await second == 2
    third = after(second)
    assert await third == 3
    await tel.stop()
    assert "run observer" not in caplog.text  # no hook raised
    assert set(by_task(exporter.get_finished_spans())) == {third.key}
    assert tel.summary()["tasks"]["completed"] == 1
    assert {e.task_id for e in events if e.task_id} == {third.key}


# --------------------------------------------------------------------------- fast spans


async def test_fast_task_spans_read_like_plain_sdk_spans(flow):
    """A done task's span skips the SDK constructors and builds its attributes when
    first read: exporters must see exactly what a plain ReadableSpan would give."""
    from opentelemetry.sdk.trace import ReadableSpan

    from asyncflow_graph.telemetry import spantree

    assert spantree._FAST, "this SDK's span layout is not the one the fast path knows"
    tel, exporter = await traced(flow)

    @flow.function_task
    async def inc(x):
        return x + 1

    async with flow.workflow_scope("wf-fast"):
        h = inc(1)
    assert await h == 2
    await tel.stop()
    span = by_task(exporter.get_finished_spans())[h.key]
    assert type(span) is not ReadableSpan  # the fast path was taken
    plain = ReadableSpan(
        "task",
        span.context,
        span.parent,
        span.resource,
        dict(span.attributes),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
    assert dict(span.attributes) == {
        "session_id": flow.uid,
        "task_id": h.key,
        "executable": "inc",
        "task_type": "function",
        "backend": "default",
        "asyncflow.partition_id": span.attributes["asyncflow.partition_id"],
        "status": "completed",
        "asyncflow.state": "DONE",
        "asyncflow.workflow_id": "wf-fast",
    }
    assert span.to_json() == plain.to_json()
    assert span.status.status_code is StatusCode.UNSET and span.events == () == plain.events

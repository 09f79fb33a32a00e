"""Traces that reach an exporter, RHAPSODY's checkpoint format, and RHAPSODY's own
backends plugged into the engine (issue 18, items 6 and 7, and the RHAPSODY part)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import define_event, load_tasks, make_event, read_events


def exported(out: io.StringIO) -> list[dict[str, Any]]:
    """The spans the console exporter wrote, one JSON object per line."""
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def console_exporter() -> tuple[BatchSpanProcessor, io.StringIO]:
    out = io.StringIO()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    return BatchSpanProcessor(exporter), out


async def run_block_in_scope(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def inc(x: int) -> int:
        return x + 1

    @flow.block
    async def pipeline(x: int) -> int:
        return await inc(await inc(x))

    async with flow.workflow_scope("wf-1"):
        assert await pipeline(1) == 3


@pytest.mark.parametrize("stop", ["telemetry.stop", "flow.shutdown only"])
async def test_trace_reaches_the_exporter_whole(stop: str, tmp_path: Path) -> None:
    """session -> workflow -> block -> task, read back from a real exporter behind
    a BatchSpanProcessor, with no span pointing at a parent it never received."""
    processor, out = console_exporter()
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    telemetry = await flow.start_telemetry(span_processors=[processor])
    await run_block_in_scope(flow)
    if stop == "telemetry.stop":
        await telemetry.stop()
    await flow.shutdown()  # ends the session even if stop() was never called
    processor.force_flush()
    spans = exported(out)
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names == ["block", "session", "task", "task", "workflow"]

    def parent(span: dict[str, Any]) -> str | None:
        pid = span["parent_id"]
        if pid is None:
            return None
        assert pid in by_id, f"{span['name']} points at a span the exporter never got"
        return str(by_id[pid]["name"])

    assert {s["name"]: parent(s) for s in spans} == {
        "session": None,
        "workflow": "session",
        "block": "workflow",
        "task": "block",
    }
    assert len({s["context"]["trace_id"] for s in spans}) == 1
    processor.shutdown()


async def test_workflow_span_follows_its_scope(tmp_path: Path) -> None:
    """The workflow span opens when the scope is entered and ends when it is left
    (after the members created in it), before the session ends."""
    processor, out = console_exporter()
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    telemetry = await flow.start_telemetry(span_processors=[processor])
    gate = asyncio.Event()

    @flow.function_task
    async def step() -> int:
        return 1

    async with flow.workflow_scope("early"):
        await step()
    await asyncio.sleep(0)  # the scope's end is decided after this turn's compile
    processor.force_flush()
    # the scope is over: its span went to the exporter while the session runs on
    assert [s["attributes"].get("asyncflow.workflow_id") for s in exported(out)
            if s["name"] == "workflow"] == ["early"]  # fmt: skip

    @flow.function_task
    async def waits() -> int:
        await gate.wait()
        return 2

    async with flow.workflow_scope("late"):
        pending = waits()  # still running when the scope is left
    await asyncio.sleep(0)  # the scope's end is decided after this turn's compile
    gate.set()
    assert await pending == 2
    await telemetry.stop()
    processor.force_flush()
    spans = exported(out)
    (late,) = [s for s in spans if s["attributes"].get("asyncflow.workflow_id") == "late"
               and s["name"] == "workflow"]  # fmt: skip
    (task,) = [s for s in spans if s["attributes"].get("task_id") == pending.key]
    assert task["parent_id"] == late["context"]["span_id"]
    assert late["end_time"] >= task["end_time"]  # it covered its member
    await flow.shutdown()
    processor.shutdown()


# -- the checkpoint in RHAPSODY's format ------------------------------------------------------


async def test_checkpoint_in_rhapsody_jsonl_format(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    telemetry = await flow.start_telemetry(checkpoint_path=tmp_path / "out")
    StageTimer = define_event("etl.StageTimer", stage=str, duration_ms=float)
    with pytest.raises(ValueError, match="needs a dot"):
        define_event("NoDot")

    @flow.function_task
    async def work(x: int) -> int:
        return x * 2

    async with flow.workflow_scope("exp-0"):
        assert await work(await work(1)) == 4
    telemetry.emit(
        make_event(
            StageTimer,
            session_id=telemetry.session_id,
            backend="etl",
            stage="ingest",
            duration_ms=1.5,
        )
    )
    await flow.shutdown()  # stops telemetry: the file is complete
    path = Path(telemetry.checkpoint_file)
    assert path.parent == tmp_path / "out"
    assert path.name.startswith(f"{flow.uid}.") and path.name.endswith(".telemetry.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    sections = {line["section"] for line in lines}
    assert sections == {"event", "span", "metric"}
    events = [e for e in lines if e["section"] == "event"]
    types = [e["event_type"] for e in events]
    assert types[0] == "SessionStarted" and types[-1] == "SessionEnded"
    for wanted in ("TaskCreated", "asyncflow.TaskResolved", "TaskSubmitted", "TaskStarted",
                   "TaskCompleted", "etl.StageTimer"):  # fmt: skip
        assert wanted in types
    for e in events:
        assert e["name"] == e["event_type"]
        assert {"event_id", "event_time", "emit_time", "session_id", "backend", "task_id",
                "node_id", "attributes", "trace_id", "span_id"} <= set(e)  # fmt: skip
    created = [e for e in events if e["event_type"] == "TaskCreated"]
    assert all(e["attributes"]["asyncflow.workflow_id"] == "exp-0" for e in created)
    assert all(e["attributes"]["executable"] == "work" for e in created)
    completed = [e for e in events if e["event_type"] == "TaskCompleted"]
    assert all(isinstance(e["duration_seconds"], float) for e in completed)
    (timer,) = [e for e in events if e["event_type"] == "etl.StageTimer"]
    assert timer["stage"] == "ingest" and timer["duration_ms"] == 1.5
    spans = [s for s in lines if s["section"] == "span"]
    assert {"session", "workflow", "task"} <= {s["name"] for s in spans}
    for s in spans:
        assert {"span_id", "trace_id", "parent_span_id", "start_ns", "end_ns", "start_time_s",
                "end_time_s", "duration_ms", "status_code", "attributes"} <= set(s)  # fmt: skip
    (metric,) = [m for m in lines if m["section"] == "metric"]
    assert metric["tasks_completed"] == 2 and "checkpoint_time" in metric

    # our reader (and so the timeline command) reads it as well as our own log
    tasks = load_tasks(path)
    assert len(tasks) == 2
    assert {t.state for t in tasks.values()} == {"DONE"}
    assert all(t.workflow_id == "exp-0" and t.name == "work" for t in tasks.values())
    assert [e.event for e in read_events(path)][0] == "session"


def test_timeline_command_reads_the_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from asyncflow_graph.__main__ import main

    log = tmp_path / "s.1.telemetry.jsonl"
    lines = [
        {"section": "event", "event_type": "SessionStarted", "event_time": 10.0, "backend": "x"},
        {"section": "event", "event_type": "TaskCreated", "event_time": 10.0, "task_id": "t1",
         "backend": "cpu", "attributes": {"executable": "f", "task_type": "function"}},
        {"section": "event", "event_type": "TaskSubmitted", "event_time": 10.1, "task_id": "t1",
         "backend": "cpu", "attributes": {}},
        {"section": "event", "event_type": "TaskStarted", "event_time": 10.2, "task_id": "t1",
         "backend": "cpu", "attributes": {}},
        {"section": "event", "event_type": "TaskFailed", "event_time": 10.5, "task_id": "t1",
         "backend": "cpu", "attributes": {}, "error_type": "ValueError"},
        {"section": "metric", "checkpoint_time": 11.0},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (task,) = load_tasks(log).values()
    assert (task.name, task.backend, task.state, task.started, task.ended) == (
        "f",
        "cpu",
        "FAILED",
        10.2,
        10.5,
    )
    png = tmp_path / "t.png"
    assert main(["timeline", str(log), "-o", str(png)]) in (0, None)
    assert png.stat().st_size > 0


# -- RHAPSODY's own backends in our engine ------------------------------------------------


async def test_rhapsody_concurrent_backend_plugs_in(tmp_path: Path) -> None:
    backends = pytest.importorskip("rhapsody.backends")
    backend = await backends.ConcurrentExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)

    @flow.function_task
    async def double(x: int) -> int:
        return 2 * x

    @flow.executable_task
    async def echo(x: int) -> str:
        return f"/bin/echo {x}"

    @flow.function_task
    async def boom() -> None:
        raise ValueError("from rhapsody")

    assert await echo(double(21)) == "42\n"
    with pytest.raises(ValueError, match="from rhapsody"):
        await boom()
    assert backend._work_dir == str(tmp_path / flow.uid) and flow.uid in backend.attached_to
    await flow.shutdown()


async def test_rhapsody_dask_backend_plugs_in(tmp_path: Path) -> None:
    backends = pytest.importorskip("rhapsody.backends")
    pytest.importorskip("distributed")
    backend = await backends.DaskExecutionBackend(
        {"n_workers": 1, "threads_per_worker": 2, "processes": False, "dashboard_address": None}
    )
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)

    @flow.function_task
    async def square(x: int) -> int:
        return x * x

    @flow.function_task
    async def total(*xs: int) -> int:
        return sum(xs)

    assert await total(*(square(i) for i in range(4))) == 14
    await flow.shutdown()

"""The JSONL lifecycle log: complete, incremental, crash-tolerant, re-readable."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import EventRecord, load_tasks, read_events, record_events

T = 5
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def flow(tmp_path):
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="cpu"), LocalExecutionBackend(name="ai")],
        work_dir=tmp_path,
    )
    yield engine
    await engine.shutdown()


async def test_thousand_task_run_logs_every_lifecycle_event(flow, tmp_path):
    path = tmp_path / "run.jsonl"

    @flow.function_task
    async def step(*xs):
        return sum(xs) + 1

    @flow.function_task(backend="ai")
    async def infer(x):
        return x

    @flow.function_task
    async def explode():
        raise ValueError("bad input")

    with record_events(flow, path):
        ends, failing, blocked = [], [], []
        for w in range(10):
            async with flow.workflow_scope(f"wf-{w}"):
                for c in range(25):  # 25 chains of 4 tasks: first -> step -> infer -> step
                    first = explode() if c == 0 else step()
                    second = step(first)
                    third = infer(second)
                    ends.append(step(third))
                    if c == 0:
                        failing.append(first)
                        blocked.extend([second, third, ends[-1]])
        results = await asyncio.gather(*ends, *failing, *blocked, return_exceptions=True)
    assert sum(isinstance(r, Exception) for r in results) == 50  # the chains' ends twice

    events = read_events(path)
    assert all(isinstance(e, EventRecord) for e in events)
    assert events[0].event == "session" and events[-1].event == "closed"
    assert events[0].data["session_id"] == flow.uid
    assert set(events[0].data["backends"]) == {"cpu", "ai"}
    seq = defaultdict(list)
    for e in events[1:-1]:
        seq[e.key].append(e.event)
    assert len(seq) == 1000
    failed = {h.key for h in failing}
    never_ran = {h.key for h in blocked}
    for key, kinds in seq.items():
        if key in failed:
            assert kinds == ["created", "submitted", "running", "failed"], key
        elif key in never_ran:  # their dependency failed: ended without running
            assert kinds[0] == "created" and kinds[-1] == "failed" and "running" not in kinds
        else:
            assert kinds == ["created", "submitted", "running", "done"], (key, kinds)
    times = [e.t for e in events]
    assert times == sorted(times)

    tasks = load_tasks(path)
    assert len(tasks) == 1000
    one = tasks[failing[3].key]
    assert (one.name, one.kind, one.backend, one.workflow_id) == (
        "explode",
        "function",
        "cpu",
        "wf-3",
    )
    assert one.state == "FAILED" and one.error == "ValueError: bad input"
    assert one.created <= one.submitted <= one.started <= one.ended
    assert tasks[blocked[9].key].deps == (failing[3].key,)
    assert {t.backend for t in tasks.values()} == {"cpu", "ai"}
    assert all(t.partition is not None for t in tasks.values())
    assert sum(t.state == "DONE" for t in tasks.values()) == 960
    assert sum(t.state == "FAILED" for t in tasks.values()) == 40


async def test_log_is_written_while_the_run_goes(flow, tmp_path):
    path = tmp_path / "live.jsonl"
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def wait():
        started.set()
        await gate.wait()
        return 1

    with record_events(flow, path) as log:
        h = wait()
        await asyncio.wait_for(started.wait(), T)
        # Nothing buffered in Python: the lines are in the file before the run ends.
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [x["event"] for x in lines] == ["session", "created", "submitted", "running"]
        assert lines[1]["key"] == h.key and lines[1]["name"] == "wait"
        gate.set()
        await h
    assert log.path == path
    assert [e.event for e in read_events(path)][-2:] == ["done", "closed"]


async def test_cancelled_tasks_are_logged(flow, tmp_path):
    path = tmp_path / "cancel.jsonl"
    started = asyncio.Event()

    @flow.function_task
    async def wait():
        started.set()
        await asyncio.Event().wait()

    @flow.function_task
    async def after(x):
        return x

    with record_events(flow, path):
        h = wait()
        dep = after(h)
        await asyncio.wait_for(started.wait(), T)
        h.cancel("stop it")
        with pytest.raises(asyncio.CancelledError):
            await dep
    tasks = load_tasks(path)
    assert tasks[h.key].state == "CANCELLED" and tasks[h.key].error == "stop it"
    assert tasks[dep.key].state == "CANCELLED" and tasks[dep.key].started is None


def test_reader_skips_a_torn_last_line_and_rejects_bad_lines(tmp_path):
    good = [
        {"event": "session", "t": 1.0, "format": 1},
        {"event": "created", "t": 1.5, "key": "k", "name": "f", "kind": "function", "deps": []},
    ]
    path = tmp_path / "torn.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in good) + '\n{"event": "subm')
    assert [e.event for e in read_events(path)] == ["session", "created"]
    assert load_tasks(path)["k"].state == "OPEN"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good[0]) + "\nnot json\n" + json.dumps(good[1]) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_events(bad)


def test_a_killed_run_leaves_a_readable_log(tmp_path):
    """The process dies (os._exit, no cleanup) in the middle of a run."""
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
            from asyncflow_graph.telemetry import EventLog

            async def main():
                flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
                flow.add_observer(EventLog(sys.argv[1], engine=flow))
                started = asyncio.Event()

                @flow.function_task
                async def quick(i):
                    return i

                @flow.function_task
                async def stuck():
                    started.set()
                    await asyncio.Event().wait()

                await asyncio.gather(*(quick(i) for i in range(50)))
                stuck()
                await started.wait()
                os._exit(3)  # no cleanup, no close()

            asyncio.run(main())
            """
        )
    )
    path = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], env=env, timeout=60, check=False
    )
    assert proc.returncode == 3
    tasks = load_tasks(path)
    assert len(tasks) == 51
    assert sum(t.state == "DONE" for t in tasks.values()) == 50
    (stuck,) = [t for t in tasks.values() if t.state == "OPEN"]
    assert stuck.name == "stuck" and stuck.started is not None


async def test_start_telemetry_checkpoint_path(flow, tmp_path):
    tel = await flow.start_telemetry(checkpoint_path=tmp_path / "logs")

    @flow.function_task
    async def work():
        return 1

    await work()
    await tel.stop()
    path = Path(tel.checkpoint_file)
    assert path.parent == tmp_path / "logs"
    assert re.fullmatch(re.escape(flow.uid) + r"\.\d+\.telemetry\.jsonl", path.name)
    assert [e.event for e in read_events(path)] == [
        "session",
        "created",
        "submitted",
        "running",
        "done",
        "closed",
    ]
    assert flow._executor.observers.all == ()


def test_a_full_disk_degrades_telemetry_and_the_run_goes_on(tmp_path):
    """RLIMIT_FSIZE in a child process: its writes past 64 KiB fail as on a full
    disk (EFBIG; Python ignores SIGXFSZ), after a short write that cuts a line."""
    script = textwrap.dedent(
        """
        import asyncio, resource, sys
        from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

        async def main():
            flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
            tel = await flow.start_telemetry(checkpoint_path=sys.argv[1])

            @flow.function_task
            async def double(i):
                return 2 * i

            results = await asyncio.gather(*(double(i) for i in range(3000)))
            print("results ok", results == [2 * i for i in range(3000)], flush=True)
            await tel.stop()
            summary = tel.summary()
            print("completed", summary["tasks"]["completed"], flush=True)
            print("degraded", summary["degraded"], flush=True)
            await flow.shutdown()

        asyncio.run(main())
        """
    )
    path = tmp_path / "run.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "results ok True" in proc.stdout and "completed 3000" in proc.stdout
    assert proc.stderr.count("telemetry degraded") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "File too large" in proc.stdout  # the reason, in summary()["degraded"]
    assert str(path) in proc.stdout
    assert path.stat().st_size <= 64 * 1024
    events = read_events(path)  # what was written stays readable (the cut line skipped)
    assert events[0].event == "session" and len(events) > 100

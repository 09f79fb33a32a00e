"""plot_timeline() and ``python -m asyncflow_graph timeline``."""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from procs import run_python

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import plot_timeline, read_events, record_events

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def run_log(tmp_path_factory) -> Path:
    """A small run with two backends, workflows, a block, a failure and a cancel."""
    path = tmp_path_factory.mktemp("timeline") / "run.jsonl"

    async def main() -> None:
        cpu = LocalExecutionBackend(ThreadPoolExecutor(2), name="cpu")
        gpu = LocalExecutionBackend(ThreadPoolExecutor(1), name="gpu")
        flow = await WorkflowEngine.create(backend=[cpu, gpu], work_dir=path.parent)
        started = asyncio.Event()

        @flow.function_task
        async def simulate(i):
            return i

        @flow.function_task(backend="gpu")
        def train(*xs):
            return sum(xs)

        @flow.function_task
        async def explode(x):
            raise RuntimeError("diverged")

        @flow.function_task
        async def hang():
            started.set()
            await asyncio.Event().wait()

        @flow.block
        async def study(n):
            return await train(*[simulate(i) for i in range(n)])

        with record_events(flow, path):
            async with flow.workflow_scope("study-a"):
                a = train(*[simulate(i) for i in range(4)])
            async with flow.workflow_scope("study-b"):
                b = study(3)
                bad = explode(b)
            stuck = hang()
            await asyncio.gather(a, b, bad, return_exceptions=True)
            await started.wait()
            stuck.cancel()
            await asyncio.gather(stuck, return_exceptions=True)
        await flow.shutdown()

    asyncio.run(main())
    return path


@pytest.mark.parametrize("group_by", ["workflow", "backend"])
def test_plot_timeline_writes_a_png(run_log, tmp_path, group_by):
    out = plot_timeline(run_log, tmp_path / f"t-{group_by}.png", group_by=group_by)
    assert out == tmp_path / f"t-{group_by}.png"
    width, height = png_size(out)
    assert 1000 <= width <= 2000 and 400 <= height <= 4000
    assert out.stat().st_size > 10_000  # something was drawn


def test_plot_timeline_from_events_and_other_formats(run_log, tmp_path):
    events = read_events(run_log)
    svg = plot_timeline(events, tmp_path / "t.svg", slots={"cpu": 2}, title="my run")
    text = svg.read_text()
    assert "<svg" in text and "my run" in text
    assert "cpu: peak" in text and "2 slots" in text


def test_plot_timeline_rejects_unknown_grouping(run_log, tmp_path):
    with pytest.raises(ValueError, match="group_by"):
        plot_timeline(run_log, tmp_path / "x.png", group_by="node")


def test_plot_timeline_of_an_empty_log(tmp_path):
    log = tmp_path / "empty.jsonl"
    log.write_text('{"event": "session", "t": 1.0, "format": 1}\n')
    png_size(plot_timeline(log, tmp_path / "empty.png"))


def run_cli(args, cwd):
    return run_python(["-m", "asyncflow_graph", *args], cwd, timeout=60)


def test_cli_timeline(run_log, tmp_path):
    proc = run_cli(["timeline", str(run_log), "-o", "out.png", "--group-by", "backend"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wrote out.png"
    png_size(tmp_path / "out.png")


def test_cli_timeline_missing_log_and_visualize_still_there(tmp_path):
    proc = run_cli(["timeline", "nope.jsonl"], tmp_path)
    assert proc.returncode != 0 and "no such event log" in proc.stderr
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0
    assert "visualize" in proc.stdout and "timeline" in proc.stdout

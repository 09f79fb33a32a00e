"""Progress bars: compute(progress=True), show_progress(flow), start_telemetry(progress=True)."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

import asyncflow_graph as ag
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import ProgressBar, show_progress


@pytest.fixture
async def flow(tmp_path):
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="cpu"), LocalExecutionBackend(name="gpu")],
        work_dir=tmp_path,
    )
    yield engine
    await engine.shutdown()


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


async def test_live_bar_counts_tasks_per_backend(flow):
    console, out = terminal()

    @flow.function_task(backend="cpu")
    async def prep(i):
        return i

    @flow.function_task(backend="gpu")
    async def train(x):
        return x

    @flow.function_task(backend="cpu")
    async def explode():
        raise ValueError("no")

    async with show_progress(flow, console=console) as bar:
        assert bar._live is not None  # a terminal: live display
        await asyncio.gather(*(train(prep(i)) for i in range(5)))
        with pytest.raises(ValueError):
            await explode()
    assert flow._executor.observers.all == ()
    assert bar.total == {"cpu": 6, "gpu": 5}
    assert bar.finished == {"cpu": 6, "gpu": 5}
    assert bar.failed == {"cpu": 1, "gpu": 0}
    text = out.getvalue()
    assert "cpu" in text and "6/6" in text and "gpu" in text and "5/5" in text
    assert "1 failed" in text
    assert bar.line() == "[asyncflow_graph] 11/11 (cpu 6/6, gpu 5/5) - 1 failed, 0 cancelled"


async def test_not_a_terminal_writes_one_summary_line(flow, capsys):
    @flow.function_task(backend="gpu")
    async def work(i):
        return i

    with show_progress(flow) as bar:  # stderr is captured: not a terminal
        assert bar._live is None
        await asyncio.gather(*(work(i) for i in range(3)))
        assert capsys.readouterr().err == ""  # nothing while it runs
    assert capsys.readouterr().err == "[asyncflow_graph] 3/3 (gpu 3/3)\n"


async def test_blocks_are_not_counted_their_members_are(flow):
    @flow.function_task(backend="cpu")
    async def step(x):
        return x

    @flow.block
    async def group(n):
        return [await step(i) for i in range(n)]

    bar = ProgressBar(flow, live=False)
    with bar:
        await group(4)
    assert bar.total == {"cpu": 4} and bar.finished == {"cpu": 4}


async def test_start_telemetry_progress(flow, capsys):
    tel = await flow.start_telemetry(progress=True)

    @flow.function_task(backend="cpu")
    async def work():
        return 1

    await asyncio.gather(work(), work())
    await tel.stop()
    assert "[asyncflow_graph] 2/2 (cpu 2/2)" in capsys.readouterr().err
    assert flow._executor.observers.all == ()


def test_compute_progress(capsys):
    @ag.function_task
    def inc(x):
        return x + 1

    @ag.function_task
    def explode(x):
        raise RuntimeError("bad")

    ok = [inc(i) for i in range(3)]
    assert ag.compute(ok, progress=True) == ([1, 2, 3],)
    assert "[asyncflow_graph] 3/3 (default 3/3)" in capsys.readouterr().err
    with pytest.raises(RuntimeError):
        ag.compute(explode(1), progress=True)
    assert "1/1 (default 1/1) - 1 failed" in capsys.readouterr().err

"""The script face: module-level decorators, compute(), compile(), the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from procs import run_python

import asyncflow_graph as ag
from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend

calls: list[str] = []
lock = threading.Lock()


@ag.function_task
def inc(x: int) -> int:
    with lock:
        calls.append("inc")
    return x + 1


@ag.function_task(pure=True)
def add(a: int, b: int) -> int:
    with lock:
        calls.append("add")
    return a + b


@ag.prompt_task(backend="ai")
def ask(x: int) -> str:
    return f"what is {x}?"


def test_building_runs_nothing_and_compute_returns_structure() -> None:
    calls.clear()
    a = inc(1)
    b = inc(a)
    c = add(a, b)
    assert calls == []
    assert isinstance(c, ag.Delayed) and len(c.graph) == 3
    out = ag.compute(c, [a, {"b": b}], "plain")
    assert out == (5, [2, {"b": 3}], "plain")
    assert sorted(calls) == ["add", "inc", "inc"]
    assert c.compute() == 5


def test_pure_calls_share_one_node_and_run_once() -> None:
    calls.clear()
    a = inc(10)
    first, second = add(a, 1), add(a, 1)
    assert first is second
    assert ag.compute(first, second) == (12, 12)
    assert calls.count("add") == 1


def test_compute_inside_running_loop_says_to_await() -> None:
    async def inside() -> None:
        ag.compute(inc(1))

    with pytest.raises(RuntimeError, match="await"):
        asyncio.run(inside())


def test_compute_with_named_backends_and_prompt_routing() -> None:
    q = ask(inc(1))
    (answer,) = ag.compute(q, backends=[LocalExecutionBackend(), NoopExecutionBackend(name="ai")])
    assert answer == "Dummy Prompt Output"


def test_compile_mixed_backends_before_running() -> None:
    calls.clear()
    q = ask(add(inc(0), inc(1)))
    plan = ag.compile(q, backends=[LocalExecutionBackend(), NoopExecutionBackend(name="ai")])
    assert {p.backend for p in plan.partitions} == {"default", "ai"}
    assert "backend='ai'" in plan.explain()
    assert calls == []


def test_failure_propagates_to_compute_caller() -> None:
    @ag.function_task
    def boom() -> int:
        raise ValueError("no data")

    with pytest.raises(ValueError, match="no data"):
        ag.compute(boom())
    with pytest.raises(ag.DependencyFailureError) as info:
        ag.compute(inc(boom()))
    assert isinstance(info.value.root_cause, ValueError)


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "asyncflow_graph", *args], cwd)


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="needs Graphviz dot")
def test_cli_visualize_draws_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    (tmp_path / "flows.py").write_text(
        "import asyncflow_graph as ag\n"
        f"MARK = {str(marker)!r}\n"
        "@ag.function_task\n"
        "def step(x):\n"
        "    open(MARK, 'w').write('ran')\n"
        "    return x\n"
        "def build():\n"
        "    return step(step(1))\n"
        "async def build_async(flow):\n"
        "    @flow.function_task\n"
        "    async def a():\n"
        "        open(MARK, 'w').write('ran')\n"
        "    @flow.prompt_task\n"
        "    async def p(x):\n"
        "        return 'q'\n"
        "    return p(a())\n"
    )
    for target, out in (("flows:build", "g1.svg"), ("flows:build_async", "g2.svg")):
        proc = _run_cli(["visualize", target, "-o", out], tmp_path)
        assert proc.returncode == 0, proc.stderr
        root = ET.parse(tmp_path / out).getroot()
        titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
        assert any(t and t.startswith("task.") for t in titles)
    assert not marker.exists()


def test_cli_bad_target_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run_cli(["visualize", "nomodule"], tmp_path)
    assert proc.returncode != 0
    assert "module:function" in proc.stderr


def test_compute_progress_counts_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    leaves = [inc(i) for i in range(5)]
    out = ag.compute(leaves, progress=True)
    assert out == ([1, 2, 3, 4, 5],)
    err = capsys.readouterr().err
    assert "[asyncflow_graph] 5/5 (default 5/5)" in err


async def test_fused_chain_keeps_intermediate_results() -> None:
    from asyncflow_graph import WorkflowEngine

    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    try:

        @flow.function_task
        async def step(x: int) -> int:
            return x * 2

        first = step(1)
        middle = step(first)
        last = step(middle)
        plan = flow.compile(last)
        assert [len(u.keys) for u in plan.units] == [3]  # one fused submission
        assert await last == 8
        assert (await first, await middle) == (2, 4)
        assert first.state == middle.state == "DONE"
    finally:
        await flow.shutdown()

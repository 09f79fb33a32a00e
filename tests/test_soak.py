"""Load and soak: many tasks, many workflows, memory back to baseline, long chains."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError

MiB = 1024 * 1024


@pytest.mark.timeout(120)
async def test_100k_noop_tasks_one_eager_run(flow):
    n = 100_000

    @flow.function_task
    async def noop(i):
        return i

    t0 = time.perf_counter()
    handles = [noop(i) for i in range(n)]
    results = await asyncio.gather(*handles)
    elapsed = time.perf_counter() - t0
    print(f"\n100k no-op tasks: {elapsed:.2f} s ({n / elapsed:,.0f} tasks/s)")
    assert results == list(range(n))
    assert all(h.state == "DONE" for h in handles)


async def test_1000_concurrent_workflows(flow):
    @flow.function_task
    async def step(name, *deps):
        return name

    async def workflow(i):
        async with flow.workflow_scope(f"wf-{i}") as wid:
            assert wid == f"wf-{i}"
            a = step(f"a{i}")
            b = step(f"b{i}", a)
            c = step(f"c{i}", b)
            assert await c == f"c{i}"
            return i, (a, b, c)

    t0 = time.perf_counter()
    out = await asyncio.gather(*(workflow(i) for i in range(1000)))
    print(f"\n1000 workflows x 3 tasks: {time.perf_counter() - t0:.2f} s")
    assert len(out) == 1000
    for i, handles in out:
        for h in handles:
            assert h.state == "DONE"
            assert h.task["workflow_id"] == f"wf-{i}"
        assert [await h for h in handles] == [f"a{i}", f"b{i}", f"c{i}"]


async def _run_engine(work_dir, n: int) -> int:
    engine = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=work_dir)
    try:

        @engine.function_task
        async def noop(i):
            return i

        @engine.function_task
        async def total(*xs):
            return sum(xs)

        handles = [noop(i) for i in range(n)]
        assert await asyncio.gather(*handles) == list(range(n))
        result = await total(*handles[:100])
    finally:
        await engine.shutdown()
    return result


async def test_memory_returns_to_baseline(tmp_path):
    n = 20_000
    tracemalloc.start()
    try:
        # Warm up at full size: imports, caches, and interpreter tables that grow but
        # never shrink (asyncio's all-tasks WeakSet holds 20k entries at the peak).
        await _run_engine(tmp_path / "warm", n)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        assert await _run_engine(tmp_path / "run", n) == sum(range(100))
        _, peak = tracemalloc.get_traced_memory()
        for _ in range(3):
            gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(
        f"\nmemory ({n} tasks): baseline={baseline / MiB:.2f} MiB "
        f"peak={peak / MiB:.2f} MiB (+{(peak - baseline) / MiB:.2f}) "
        f"after={after / MiB:.2f} MiB (+{(after - baseline) / MiB:.3f})"
    )
    assert peak > baseline + MiB  # the run really allocated something
    assert after - baseline < MiB  # measured: ~0.001 MiB


async def test_10k_chain_no_recursion_error(flow):
    n = 10_000

    @flow.function_task
    async def inc(x):
        return x + 1

    h = inc(0)
    handles = [h]
    for _ in range(n - 1):
        h = inc(h)
        handles.append(h)
    assert await asyncio.wait_for(h, 30) == n
    assert all(x.state == "DONE" for x in handles)
    assert handles[4999].result() == 5000


async def test_10k_chain_first_fails_all_fail(flow):
    n = 10_000

    @flow.function_task
    async def first():
        raise ValueError("chain head broke")

    @flow.function_task
    async def inc(x):
        return x + 1

    h = first()
    handles = [h]
    for _ in range(n - 1):
        h = inc(h)
        handles.append(h)
    await asyncio.wait_for(asyncio.wait(handles), 30)
    assert all(x.state == "FAILED" for x in handles)
    with pytest.raises(ValueError, match="chain head broke"):
        await handles[0]
    for x in handles[1:]:
        assert isinstance(x.exception(), DependencyFailureError)
    assert handles[1].exception().root_cause is handles[0].exception()
    assert handles[-1].exception().failed_dependencies == ["inc"]  # task names

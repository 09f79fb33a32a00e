"""Property test through the real engine: random DAGs with random failing nodes."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[list[int]], set[int], list[bool]]:
    n = draw(st.integers(1, 25))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    failing = draw(st.sets(st.integers(0, n - 1), max_size=4))
    plain = draw(st.lists(st.booleans(), min_size=n, max_size=n))  # sync or async body
    return deps, failing, plain


async def run_dag(deps: list[list[int]], failing: set[int], plain: list[bool]):
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="a"), NoopExecutionBackend(name="b")]
    )
    ran: list[int] = []
    try:

        def body(i: int, *inputs: int) -> int:
            ran.append(i)
            if i in failing:
                raise ValueError(f"node {i}")
            return 1 + sum(inputs)

        @flow.function_task(backend="a")
        def sync_task(i, *inputs):
            return body(i, *inputs)

        @flow.function_task(backend="a")
        async def async_task(i, *inputs):
            return body(i, *inputs)

        handles = []
        for i, ds in enumerate(deps):
            task = sync_task if plain[i] else async_task
            handles.append(task(i, *[handles[d] for d in ds]))
        results = await asyncio.gather(*handles, return_exceptions=True)
    finally:
        await flow.shutdown()
    return results, ran, handles


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_every_future_ends_and_failures_follow_ancestry(case) -> None:
    deps, failing, plain = case
    results, ran, handles = asyncio.run(run_dag(deps, failing, plain))
    n = len(deps)
    # a node is doomed iff it raised or an ancestor raised
    doomed = [False] * n
    for i in range(n):
        doomed[i] = i in failing or any(doomed[d] for d in deps[i])
    value = [0] * n
    for i in range(n):
        value[i] = 1 + sum(value[d] for d in deps[i])
    for i, r in enumerate(results):
        assert handles[i].done()
        if any(doomed[d] for d in deps[i]):
            assert isinstance(r, DependencyFailureError) and handles[i].state == "FAILED"
        elif i in failing:
            assert isinstance(r, ValueError) and handles[i].state == "FAILED"
        else:
            assert r == value[i] and handles[i].state == "DONE"
    # nothing runs after an ancestor failed
    for i in ran:
        assert not any(doomed[d] for d in deps[i]), f"node {i} ran after a failed ancestor"

"""Property tests through the real engine: random DAGs with random failing nodes, and
random DAGs with random cancels and timeouts at random moments on the async, thread
and process backends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError, TaskTimeoutError


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


# --------------------------------------------------------------------------- cancels and timeouts
#
# Random DAGs whose bodies wait at a gate (a file, so that threads and worker processes
# see it too) and record when they started; a random schedule opens gates, cancels
# handles and lets timeouts expire, a short pause after each step. Then: every future
# ends; a DONE task got exactly its own dependencies' values; a body never starts after
# the cancel that ended it returned (within SLACK on threads and processes, where a body
# that passed its backend's check just before the cancel records its start just after;
# a wrongly run body starts only at a later step, PAUSE later); a task that failed
# because a dependency did never started.

PAUSE = 0.03  # between two steps of a schedule
SLACK = 0.015  # see above: < PAUSE


def _gate_wait(i: int, where: str) -> None:
    Path(where, f"started-{i}").write_text(repr(time.monotonic()))
    gate = Path(where, f"gate-{i}")
    while not gate.exists():
        time.sleep(0.002)


def sync_body(i: int, where: str, *inputs: tuple[int, tuple[int, ...]]) -> tuple[int, tuple]:
    _gate_wait(i, where)
    return (i, tuple(x[0] for x in inputs))


async def async_body(i: int, where: str, *inputs: tuple[int, tuple[int, ...]]) -> tuple[int, tuple]:
    Path(where, f"started-{i}").write_text(repr(time.monotonic()))
    gate = Path(where, f"gate-{i}")
    while not gate.exists():
        await asyncio.sleep(0.002)
    return (i, tuple(x[0] for x in inputs))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[list[int]], list[float | None], list[tuple[str, int]]]:
    n = draw(st.integers(2, 9))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else [] for i in range(n)]
    timeouts = [draw(st.sampled_from([None, None, None, 0.05, 0.15])) for _ in range(n)]
    steps = [("open", i) for i in range(n)]
    steps += [("cancel", draw(st.integers(0, n - 1))) for _ in range(draw(st.integers(0, 3)))]
    steps += [("wait", 0)] * draw(st.integers(0, 2))  # a pause long enough for a timeout
    return deps, timeouts, draw(st.permutations(steps))


def _backend(kind: str) -> LocalExecutionBackend:
    if kind == "process":
        from concurrent.futures import ProcessPoolExecutor

        return LocalExecutionBackend(ProcessPoolExecutor(max_workers=2))
    return LocalExecutionBackend()


async def run_schedule(kind, deps, timeouts, steps, where):
    flow = await WorkflowEngine.create(backend=_backend(kind), work_dir=where)
    cancels: dict[int, float] = {}  # node -> when the cancel that succeeded on it returned
    try:
        body = async_body if kind == "async" else sync_body
        handles = []
        for i, ds in enumerate(deps):
            options = {"timeout": timeouts[i]} if timeouts[i] is not None else {}
            task = flow.function_task(**options)(body)
            handles.append(task(i, str(where), *[handles[d] for d in ds]))
        await asyncio.sleep(PAUSE)
        for action, i in steps:
            if action == "open":
                Path(where, f"gate-{i}").write_text("")
            elif action == "cancel" and handles[i].cancel():
                cancels[i] = time.monotonic()
            await asyncio.sleep(0.2 if action == "wait" else PAUSE)
        for i in range(len(deps)):
            Path(where, f"gate-{i}").write_text("")
        results = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), 20)
    finally:
        await flow.shutdown()
    started = {
        i: float(Path(where, f"started-{i}").read_text())
        for i in range(len(deps))
        if Path(where, f"started-{i}").exists()
    }
    return handles, results, cancels, started


def check_schedule(kind, deps, handles, results, cancels, started):
    n = len(deps)
    ancestors = [set() for _ in range(n)]
    for i in range(n):
        for d in deps[i]:
            ancestors[i] |= {d} | ancestors[d]
    slack = 0.0 if kind == "async" else SLACK
    for i, (h, r) in enumerate(zip(handles, results, strict=True)):
        assert h.done(), f"node {i} never ended"
        if h.state == "DONE":
            assert r == (i, tuple(deps[i])), f"node {i} got {r!r}: not its own inputs"
            assert i in started
        elif h.state == "CANCELLED":
            causes = [cancels[j] for j in (i, *ancestors[i]) if j in cancels]
            assert causes, f"node {i} cancelled by nobody"
            if i in started:
                assert started[i] <= min(causes) + slack, f"node {i} ran after its cancel"
        else:
            assert h.state == "FAILED"
            if isinstance(r, DependencyFailureError):
                assert i not in started, f"node {i} ran after a dependency failed"
            else:
                assert isinstance(r, TaskTimeoutError), r


@pytest.mark.parametrize(("kind", "examples"), [("async", 15), ("thread", 10), ("process", 6)])
def test_cancels_and_timeouts_at_random_moments(kind, examples, tmp_path_factory):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(schedules())
    def prop(case):
        deps, timeouts, steps = case
        where = tmp_path_factory.mktemp("schedule")
        out = asyncio.run(run_schedule(kind, deps, timeouts, steps, where))
        check_schedule(kind, deps, *out)

    prop()

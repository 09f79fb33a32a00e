"""Coarsening on a real Dask cluster (issue 20): groups of tasks run as one Dask task
while every task keeps its own value, error, cancel, retries and resources; a killed
worker mid-group costs only the group's unfinished tasks; the event log keeps one
record per task; and for random DAGs with random failures, coarsened and uncoarsened
runs end every task the same way.

The in-process ``LocalCluster`` (threads of this process) serves most tests; the ones
about processes, resources and dying workers use the real ``dask scheduler`` /
``dask worker`` processes of tests/dask_cluster.py. Durations are primed in the
backend's duration model where a test needs a known grouping.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import dask_cluster
import pytest
from dask_cluster import CLIENT_UNPICKLED, block_until, make_tracked, relabel, wait_running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.errors import AsyncFlowGraphError, DependencyFailureError
from asyncflow_graph.executor.events import RunObserver
from asyncflow_graph.protocol import function_id
from asyncflow_graph.telemetry import read_events, record_events
from asyncflow_graph.testing import wait_for_path

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

dask_subprocess_cluster = dask_cluster.dask_subprocess_cluster
subprocess_cluster = dask_cluster.subprocess_cluster
dask_local_cluster = dask_cluster.dask_local_cluster

T = 30.0


def DaskBackend(**kwargs: Any) -> Any:  # noqa: N802 - stands for the class
    from asyncflow_graph.backends import DaskExecutionBackend

    return DaskExecutionBackend(**kwargs)


@pytest.fixture(autouse=True)
def _fresh_estimates():
    """Durations measured by one test must not decide another's grouping."""
    from asyncflow_graph.backends import dask_refs

    dask_refs.MODELS.clear()
    yield
    dask_refs.MODELS.clear()


@pytest.fixture(params=["LocalCluster", "dask-cli"])
def address(request: Any) -> str:
    """The in-process LocalCluster, or the real ``dask scheduler`` / ``dask worker``
    processes."""
    if request.param == "LocalCluster":
        return str(request.getfixturevalue("dask_local_cluster").scheduler_address)
    return str(request.getfixturevalue("dask_subprocess_cluster").address)


def prime(backend: Any, seconds: float, *funcs: Any) -> None:
    """Tell the backend's duration model that ``funcs`` take ``seconds`` per call."""
    for f in funcs:
        backend._groups.model.durations[function_id(f)] = seconds


class Units(RunObserver):
    """The units each backend was handed."""

    def __init__(self) -> None:
        self.units: list[Any] = []

    def on_submitted(self, backend: str, units: Any) -> None:
        self.units.extend(units)

    def groups(self) -> list[tuple[str, ...]]:
        out = []
        for u in self.units:
            start = 0
            for n in u.groups or (1,) * len(u.keys):
                out.append(u.keys[start : start + n])
                start += n
        return out


async def engine(backend: Any, tmp_path: Path, execution: str = "eager") -> Any:
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path, execution=execution)
    units = Units()
    flow.add_observer(units)
    flow.units = units
    return flow


# --------------------------------------------------------------------------- task bodies
# Module-level: the worker processes import them by reference (tests/ is on their path).


def value(i: int, *_: Any) -> int:
    return i


def total(*xs: int) -> int:
    return sum(xs)


def boom(i: int, *_: Any) -> int:
    raise ValueError(f"boom {i}")


def count(path: str, *_: Any) -> int:
    """Append one byte to ``path`` per run; returns the number of runs so far."""
    with open(path, "ab") as f:
        f.write(b"x")
    return os.path.getsize(path)


def fails_first(path: str, *_: Any) -> int:
    n = count(path)
    if n == 1:
        raise RuntimeError("first attempt fails")
    return n


def slow(seconds: float, *_: Any) -> str:
    time.sleep(seconds)
    return "slow"


def where_name(*_: Any) -> str:
    from distributed import get_worker

    return str(get_worker().name)


def runs(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# --------------------------------------------------------------------------- values, errors


async def test_every_task_of_a_chunk_has_its_own_value_and_error(address, tmp_path):
    backend = DaskBackend(address=address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, value, boom, total)
        ok = flow.function_task(value)
        bad = flow.function_task(boom)
        tot = flow.function_task(total)
        xs = [ok(i) for i in range(20)]
        b = bad(99)
        after = tot(b, xs[0])  # a dependent of the failure, in the next level's chunk
        s = tot(*xs)
        results = await asyncio.wait_for(
            asyncio.gather(*xs, b, after, s, return_exceptions=True), T
        )
        assert results[:20] == list(range(20))
        assert isinstance(results[20], ValueError) and str(results[20]) == "boom 99"
        assert "Raised on a Dask worker" in "".join(results[20].__notes__)
        assert isinstance(results[21], DependencyFailureError)
        assert results[21].root_cause is results[20]
        assert results[22] == sum(range(20))
        # the 21 independent tasks ran as one Dask task, the two reduces as another
        assert [len(g) for g in flow.units.groups()] == [21, 2]
        assert b.state == "FAILED" and after.state == "FAILED" and s.state == "DONE"
    finally:
        await flow.shutdown()


async def test_a_chain_runs_as_one_dask_task_and_every_handle_resolves(
    dask_local_cluster, tmp_path
):
    backend = DaskBackend(address=dask_local_cluster.scheduler_address)
    flow = await engine(backend, tmp_path)
    try:
        inc = flow.function_task(lambda x: x + 1)
        chain = [inc(0)]
        for _ in range(499):
            chain.append(inc(chain[-1]))
        assert await asyncio.wait_for(chain[-1], T) == 500
        assert [len(g) for g in flow.units.groups()] == [256, 244]  # no estimate yet
        assert await asyncio.wait_for(chain[10], T) == 11  # an intermediate, on demand
        # measured now: the next chain of the same function is one Dask task
        again = [inc(0)]
        for _ in range(499):
            again.append(inc(again[-1]))
        assert await asyncio.wait_for(again[-1], T) == 500
        assert [len(g) for g in flow.units.groups()][2:] == [500]
    finally:
        await flow.shutdown()


async def test_intermediate_values_of_a_group_stay_on_the_cluster(
    dask_subprocess_cluster, tmp_path
):
    backend = DaskBackend(address=dask_subprocess_cluster.address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, make_tracked, relabel)
        make = flow.function_task(make_tracked)
        rel = flow.function_task(relabel)
        firsts = [make(f"first-{i}-{tmp_path.name}") for i in range(8)]
        finals = [rel(f, f"final-{i}-{tmp_path.name}") for i, f in enumerate(firsts)]
        got = await asyncio.wait_for(finals[3], T)
        assert got.label == f"final-3-{tmp_path.name}<-first-3-{tmp_path.name}"
        assert not any(label.startswith("first-") for label in CLIENT_UNPICKLED)
        assert len(flow.units.groups()) < 16  # grouped, not one Dask task per task
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- cancel, retry, timeout


async def test_cancel_one_task_of_a_running_chunk(address, tmp_path):
    started, gate = tmp_path / "started", tmp_path / "gate"
    backend = DaskBackend(address=address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, block_until, count)
        blocker = flow.function_task(block_until)(str(started), str(gate))
        marks = [flow.function_task(count)(str(tmp_path / f"m{i}")) for i in range(5)]
        try:
            await wait_for_path(started, T)
            assert [len(g) for g in flow.units.groups()] == [6]  # one chunk, running now
            assert marks[2].cancel() is True
            await flow.settle(timeout=T)  # every worker has been told
        finally:
            gate.touch()
        results = await asyncio.wait_for(asyncio.gather(blocker, *marks, return_exceptions=True), T)
        assert isinstance(results[3], asyncio.CancelledError)
        assert [runs(tmp_path / f"m{i}") for i in range(5)] == [1, 1, 0, 1, 1]
        assert [r for i, r in enumerate(results[1:]) if i != 2] == [1, 1, 1, 1]
    finally:
        await flow.shutdown()


async def test_retries_rerun_only_the_failed_task_of_a_chunk(address, tmp_path):
    backend = DaskBackend(address=address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, count, fails_first)
        flaky = flow.function_task(fails_first, retries=1)(str(tmp_path / "flaky"))
        steady = [flow.function_task(count)(str(tmp_path / f"s{i}")) for i in range(6)]
        no_retry = flow.function_task(fails_first)(str(tmp_path / "once"))
        results = await asyncio.wait_for(
            asyncio.gather(flaky, *steady, no_retry, return_exceptions=True), T
        )
        assert results[0] == 2 and runs(tmp_path / "flaky") == 2
        assert results[1:7] == [1] * 6 and all(runs(tmp_path / f"s{i}") == 1 for i in range(6))
        assert isinstance(results[7], RuntimeError) and runs(tmp_path / "once") == 1
        assert [len(g) for g in flow.units.groups()] == [8]
    finally:
        await flow.shutdown()


async def test_a_timeout_applies_to_its_own_task_only(dask_local_cluster, tmp_path):
    backend = DaskBackend(address=dask_local_cluster.scheduler_address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, value, slow)
        xs = [flow.function_task(value)(i) for i in range(10)]
        late = flow.function_task(slow, timeout=0.5)(3.0)
        results = await asyncio.wait_for(asyncio.gather(*xs, late, return_exceptions=True), T)
        assert results[:10] == list(range(10))
        assert isinstance(results[10], TimeoutError) and late.state == "FAILED"
        assert sorted(len(g) for g in flow.units.groups()) == [1, 10]
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- placement, deaths


async def test_tasks_with_different_resources_never_share_a_chunk(
    dask_subprocess_cluster, tmp_path
):
    backend = DaskBackend(address=dask_subprocess_cluster.address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, where_name)
        on = flow.function_task(where_name)
        gpu = [on(i, task_description={"resources": {"GPU": 1}}) for i in range(12)]
        anywhere = [on(i) for i in range(12)]
        names = await asyncio.wait_for(asyncio.gather(*gpu, *anywhere), T)
        assert set(names[:12]) == {"w1"}  # only w1 has a GPU
        gpu_keys = {h.key for h in gpu}
        for g in flow.units.groups():
            assert len({k in gpu_keys for k in g}) == 1, g
        assert len(flow.units.groups()) == 2
    finally:
        await flow.shutdown()


@pytest.mark.parametrize("retries", [1, 0])
async def test_a_killed_worker_mid_chunk_costs_only_its_unfinished_tasks(
    subprocess_cluster, tmp_path, retries
):
    cluster = subprocess_cluster
    started, gate = tmp_path / "started", tmp_path / "gate"
    backend = DaskBackend(address=cluster.address)
    flow = await engine(backend, tmp_path)
    try:
        prime(backend, 1e-4, count, block_until)
        before = [flow.function_task(count)(str(tmp_path / f"a{i}")) for i in range(3)]
        victim = flow.function_task(block_until, retries=retries)(str(started), str(gate))
        after = [flow.function_task(count)(str(tmp_path / f"b{i}")) for i in range(3)]
        try:
            await wait_for_path(started, T)
            # the worker tells the client the blocker runs long, with what ended before it
            await wait_running(victim, T)
            assert [h.state for h in before] == ["DONE"] * 3
            assert [len(g) for g in flow.units.groups()] == [7]
            pid = int(started.read_text())
            started.unlink()
            await asyncio.to_thread(cluster.kill_worker_process, pid)
            if retries:
                await wait_for_path(started, T)  # the blocker runs again, alone
        finally:
            gate.touch()
        results = await asyncio.wait_for(
            asyncio.gather(*before, victim, *after, return_exceptions=True), T
        )
        assert results[:3] == [1, 1, 1] and results[4:] == [1, 1, 1]
        assert all(runs(tmp_path / f"{p}{i}") == 1 for p in "ab" for i in range(3))
        if retries:
            assert results[3] != pid, "the blocker ran again on a live worker"
        else:
            assert isinstance(results[3], AsyncFlowGraphError)
            assert "worker" in str(results[3]).lower()
            assert victim.state == "FAILED"
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- telemetry


async def test_event_log_has_one_record_per_task_of_a_chunk(address, tmp_path):
    backend = DaskBackend(address=address)
    flow = await engine(backend, tmp_path)
    path = tmp_path / "run.jsonl"
    try:
        prime(backend, 1e-4, value, boom)
        with record_events(flow, path):
            xs = [flow.function_task(value)(i) for i in range(30)]
            b = flow.function_task(boom)(1)
            await asyncio.wait_for(asyncio.gather(*xs, b, return_exceptions=True), T)
        assert [len(g) for g in flow.units.groups()] == [31]
        seq = defaultdict(list)
        for e in read_events(path)[1:-1]:
            seq[e.key].append(e.event)
        assert len(seq) == 31
        for h in xs:
            assert seq[h.key] == ["created", "submitted", "done"], seq[h.key]
        assert seq[b.key] == ["created", "submitted", "failed"]
    finally:
        await flow.shutdown()


async def test_lazy_gather_is_compiled_at_the_end_of_the_turn_in_slices(
    dask_local_cluster, tmp_path
):
    backend = DaskBackend(address=dask_local_cluster.scheduler_address)
    flow = await engine(backend, tmp_path, execution="lazy")
    try:
        prime(backend, 1e-5, value)
        xs = [flow.function_task(value)(i) for i in range(2000)]
        assert await asyncio.wait_for(asyncio.gather(*xs), T) == list(range(2000))
        # not one compile per handle: one per slice of 1,024 (as eager mode does)
        assert [len(g) for g in flow.units.groups()] == [1024, 976]
    finally:
        await flow.shutdown()


# --------------------------------------------------------------------------- property


@st.composite
def dags(draw: Any) -> tuple[list[list[int]], set[int], str]:
    n = draw(st.integers(1, 40))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    failing = draw(st.sets(st.integers(0, n - 1), max_size=4))
    execution = draw(st.sampled_from(["eager", "lazy"]))
    return deps, failing, execution


def node_body(i: int, failing: frozenset[int], *inputs: int) -> int:
    if i in failing:
        raise ValueError(f"node {i}")
    return 1 + sum(inputs)


async def run_dag(address: str, case: Any, coarsen: bool, tmp_path: Path) -> list[Any]:
    deps, failing, execution = case
    backend = DaskBackend(address=address, coarsen=coarsen)
    flow = await engine(backend, tmp_path, execution)
    try:
        prime(backend, 1e-5, node_body)
        task = flow.function_task(node_body)
        handles: list[Any] = []
        for i, ds in enumerate(deps):
            handles.append(task(i, frozenset(failing), *[handles[d] for d in ds]))
        results = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), T)
        grouped = any(len(g) > 1 for g in flow.units.groups())
        return [_outcome(r) for r in results] + [grouped]
    finally:
        await flow.shutdown()


def _outcome(r: Any) -> Any:
    if isinstance(r, DependencyFailureError):
        while isinstance(r.root_cause, DependencyFailureError):
            r = r.root_cause  # which failed input is "first" depends on timing
        return ("dependency", str(r.root_cause))
    if isinstance(r, BaseException):
        return (type(r).__name__, str(r))
    return r


def _expected(case: Any) -> list[Any]:
    """What every task must end with: its value, its own error, or a dependency
    failure whose root is the error of a failing ancestor (one of them)."""
    deps, failing, _ = case
    out: list[Any] = []
    value: list[int] = []
    roots: list[set[str]] = []  # errors that may be the root of a dependency failure
    for i, ds in enumerate(deps):
        upstream = set().union(*(roots[d] for d in ds)) if ds else set()
        if upstream:
            out.append(upstream)
            roots.append(upstream)
        elif i in failing:
            out.append(("ValueError", f"node {i}"))
            roots.append({f"node {i}"})
        else:
            out.append(1 + sum(value[d] for d in ds))
            roots.append(set())
        value.append(out[-1] if isinstance(out[-1], int) else 0)
    return out


def _matches(got: Any, want: Any) -> bool:
    if isinstance(want, set):
        return isinstance(got, tuple) and got[0] == "dependency" and got[1] in want
    return bool(got == want)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(dags())
def test_property_coarsened_and_uncoarsened_runs_end_every_task_alike(
    dask_local_cluster, tmp_path, case
):
    address = dask_local_cluster.scheduler_address
    coarse = asyncio.run(run_dag(address, case, True, tmp_path))
    plain = asyncio.run(run_dag(address, case, False, tmp_path))
    want = _expected(case)
    for i, (c, p, w) in enumerate(zip(coarse, plain, want, strict=False)):
        assert _matches(c, w) and _matches(p, w), (i, c, p, w)
        if not isinstance(w, set):
            assert c == p, (i, c, p)
    assert not plain[-1]
    deps, _, _ = case
    if len(deps) > 1 and any(not ds for ds in deps[1:]):
        assert coarse[-1], "independent tasks on one level were not grouped"


async def test_spans_one_per_task_of_a_chunk(dask_local_cluster, tmp_path):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    backend = DaskBackend(address=dask_local_cluster.scheduler_address)
    flow = await engine(backend, tmp_path)
    try:
        exporter = InMemorySpanExporter()
        await flow.start_telemetry(span_processors=[SimpleSpanProcessor(exporter)])
        prime(backend, 1e-4, value)
        xs = [flow.function_task(value)(i) for i in range(25)]
        await asyncio.wait_for(asyncio.gather(*xs), T)
        assert [len(g) for g in flow.units.groups()] == [25]
    finally:
        await flow.shutdown()
    spans = [s for s in exporter.get_finished_spans() if "task_id" in s.attributes]
    assert sorted(s.attributes["task_id"] for s in spans) == sorted(h.key for h in xs)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [({"coarsen": "yes"}, "coarsen= must be True or False"), ({"chunk_seconds": 0}, "> 0")],
)
def test_bad_coarsening_options_are_refused_clearly(kwargs, says):
    from asyncflow_graph.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=says):
        DaskBackend(**kwargs)

"""Graph units and remote values, with a small in-process "remote" backend.

The backend below behaves like Dask from the executor's point of view: it takes a
whole partition of function tasks as one graph unit, keeps every result in its own
store and reports a ``Remote`` reference; it counts what the executor fetches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_graph_compiler import mk

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import Backend, Remote, Work
from asyncflow_graph.compiler import Capabilities, compile_plan
from asyncflow_graph.errors import DependencyFailureError
from asyncflow_graph.spec import TaskKind, substitute


class StoreBackend(Backend):
    """Runs graph units on the loop, keeps results, reports Remote references."""

    capabilities = Capabilities(remote=True, graph_units=True, handles_retries=False)

    def __init__(self, name: str = "remote", gate: asyncio.Event | None = None) -> None:
        super().__init__(name)
        self.store: dict[str, Any] = {}
        self.fetched: list[str] = []
        self.cancelled: list[str] = []
        self.submissions: list[tuple[str, ...]] = []
        self.gate = gate

    def submit(self, works: Sequence[Work]) -> None:
        for w in works:
            self.submissions.append(tuple(n.key for n in w.nodes))
            asyncio.ensure_future(self._run(w))

    async def _run(self, work: Work) -> None:
        if self.gate is not None:
            await self.gate.wait()
        report = self.context.reporter
        failed: set[str] = set()
        for node in work.nodes:
            if node.key in self.cancelled:
                continue
            if any(d in failed or d in self.cancelled for d in node.deps):
                failed.add(node.key)  # dependents of a failure are not reported (Dask-like)
                continue
            values = {}
            for d in node.deps:
                v = self.store[d] if d in self.store else work.inputs[d]
                values[d] = self.store[v.ref] if isinstance(v, Remote) else v
            args, kwargs = substitute(node.args, node.kwargs, values, node.deep)
            try:
                result = node.func(*args, **kwargs)
            except Exception as exc:
                failed.add(node.key)
                report.failed(node.key, exc)
                continue
            self.store[node.key] = result
            report.done(node.key, Remote(self.name, node.key))
            await asyncio.sleep(0)

    async def cancel(self, work: Work) -> None:
        self.cancelled.extend(n.key for n in work.nodes)

    async def fetch(self, ref: Any) -> Any:
        self.fetched.append(ref)
        return self.store[ref]


# --------------------------------------------------------------------------- compiler


def test_partition_of_functions_becomes_one_graph_unit() -> None:
    nodes = {
        "a": mk("a", (), "r"),
        "b": mk("b", ("a",), "r"),
        "c": mk("c", ("a",), "r"),
        "d": mk("d", ("b", "c"), "r"),
        "e": mk("e", ("d",), "r", kind=TaskKind.EXECUTABLE),
        "f": mk("f", ("e",), "r"),
    }
    caps = {"r": Capabilities(graph_units=True)}
    plan = compile_plan(nodes, caps, "r")
    units = plan.units
    graph = [u for u in units if u.graph]
    assert len(graph) == 1
    assert graph[0].keys == ("a", "b", "c", "d") and graph[0].inputs == ()
    # the executable and what follows it stay separate units, after the graph unit
    rest = [u.keys for u in units if not u.graph]
    assert sorted(rest) == [("e",), ("f",)]
    # without the capability, nothing merges
    plain = compile_plan(nodes, {"r": Capabilities()}, "r")
    assert not any(u.graph for u in plain.units)


# --------------------------------------------------------------------------- engine


async def test_intermediate_results_stay_remote_until_awaited() -> None:
    store = StoreBackend()
    flow = await WorkflowEngine.create(backend=[store, LocalExecutionBackend(name="local")])

    @flow.function_task
    def inc(x: int) -> int:
        return x + 1

    a = inc(1)
    b = inc(a)
    c = inc(b)
    assert await c == 4
    assert store.fetched == [c.key]  # a and b never came back
    assert store.submissions == [(a.key, b.key, c.key)]  # one submission for the chain
    with pytest.raises(asyncio.InvalidStateError, match="await"):
        a.result()
    assert await a == 2  # fetched on demand
    assert store.fetched == [c.key, a.key]
    await flow.shutdown()


async def test_remote_value_feeding_another_backend_is_fetched_once() -> None:
    store = StoreBackend()
    flow = await WorkflowEngine.create(backend=[store, LocalExecutionBackend(name="local")])

    @flow.function_task
    def make() -> list[int]:
        return [1, 2, 3]

    @flow.function_task(backend="local")
    def total(xs: list[int]) -> int:
        return sum(xs)

    @flow.executable_task(backend="local")
    def echo(xs: list[int]) -> str:
        return f"echo {len(xs)}"

    @flow.block
    async def inspect(xs: list[int]) -> int:
        return len(xs)

    data = make()
    results = await asyncio.gather(total(data), total(data), echo(data), inspect(data))
    assert results[:2] == [6, 6] and results[2].strip() == "3" and results[3] == 3
    assert store.fetched == [data.key]
    await flow.shutdown()


async def test_failure_inside_graph_unit_spares_independent_keys() -> None:
    store = StoreBackend()
    flow = await WorkflowEngine.create(backend=store)

    @flow.function_task
    def ok(*xs: int) -> int:
        return 1 + sum(xs)

    @flow.function_task
    def boom(*xs: int) -> int:
        raise ValueError("boom")

    root = ok()
    bad = boom(root)
    after_bad = ok(bad)
    sibling = ok(root)
    results = await asyncio.gather(bad, after_bad, sibling, return_exceptions=True)
    assert isinstance(results[0], ValueError)
    assert isinstance(results[1], DependencyFailureError)
    assert results[1].root_cause is results[0]
    assert results[2] == 2
    assert len(store.submissions) == 1
    await flow.shutdown()


async def test_cancel_one_key_of_running_graph_unit() -> None:
    gate = asyncio.Event()
    store = StoreBackend(gate=gate)
    flow = await WorkflowEngine.create(backend=store)

    @flow.function_task
    def ok(*xs: int) -> int:
        return 1 + sum(xs)

    root = ok()
    victim = ok(root)
    after = ok(victim)
    sibling = ok(root)
    await asyncio.sleep(0)  # let the engine compile and submit this turn's batch
    while not store.submissions:
        await asyncio.sleep(0)
    assert victim.cancel("not needed")
    gate.set()
    results = await asyncio.gather(victim, after, sibling, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] == 2
    await asyncio.sleep(0)
    # the cancelled key and its dependent stop; the sibling and the root ran on
    assert store.cancelled == [victim.key, after.key]
    await flow.shutdown()


async def test_shutdown_ends_unfetched_remote_handles() -> None:
    store = StoreBackend()
    flow = await WorkflowEngine.create(backend=store)

    @flow.function_task
    def one() -> int:
        return 1

    @flow.function_task
    def inc(x: int) -> int:
        return x + 1

    a = one()
    b = inc(a)
    assert await b == 2
    await flow.shutdown()
    assert a.done() and a.cancelled() and a.state == "CANCELLED"


# --------------------------------------------------------------------------- property


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[list[int]], set[int], list[str]]:
    n = draw(st.integers(1, 20))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    failing = draw(st.sets(st.integers(0, n - 1), max_size=3))
    where = draw(st.lists(st.sampled_from(["remote", "local"]), min_size=n, max_size=n))
    return deps, failing, where


async def run_dag(deps: list[list[int]], failing: set[int], where: list[str]):
    store = StoreBackend()
    flow = await WorkflowEngine.create(backend=[store, LocalExecutionBackend(name="local")])

    def body(i: int, *inputs: int) -> int:
        if i in failing:
            raise ValueError(f"node {i}")
        return 1 + sum(inputs)

    tasks = {name: flow.function_task(backend=name)(body) for name in ("remote", "local")}
    handles: list[Any] = []
    for i, ds in enumerate(deps):
        handles.append(tasks[where[i]](i, *[handles[d] for d in ds]))
    results = await asyncio.gather(*handles, return_exceptions=True)
    await flow.shutdown()
    return results, store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_property_remote_graph_units_match_naive_evaluation(case) -> None:
    deps, failing, where = case
    results, store = asyncio.run(run_dag(deps, failing, where))
    n = len(deps)
    doomed = [False] * n
    value = [0] * n
    for i in range(n):
        doomed[i] = i in failing or any(doomed[d] for d in deps[i])
        value[i] = 1 + sum(value[d] for d in deps[i])
    for i, r in enumerate(results):
        if any(doomed[d] for d in deps[i]):
            assert isinstance(r, DependencyFailureError), (i, r)
        elif i in failing:
            assert isinstance(r, ValueError), (i, r)
        else:
            assert r == value[i], (i, r)
    # every value came back at most once
    assert len(store.fetched) == len(set(store.fetched))

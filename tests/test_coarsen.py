"""The coarsen pass (issue 20), alone: fused chains and chunks sized from measured
durations, the load-balance bound, long and large tasks never grouped, resources never
mixed, explain() says why; and for random DAGs the groups are a valid layout (every key
once, topological, groups acyclic)."""

from __future__ import annotations

from math import ceil

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncflow_graph.compiler import Capabilities, compile_plan
from asyncflow_graph.compiler.coarsen import UNKNOWN_MAX_TASKS, UNKNOWN_SPREAD, chunk_seconds
from asyncflow_graph.protocol import Coarsening, function_id
from asyncflow_graph.spec import EMPTY_MAPPING, Node, Ref, TaskKind, TaskOptions

CAPS = {"dask": Capabilities(graph_units=True, needs_pickle=True, remote=True)}


def small(*xs):
    return 1


def big(*xs):
    return 1


def mk(key, deps=(), func=small, resources=None, timeout=None):
    options = TaskOptions(resources=resources or EMPTY_MAPPING, timeout=timeout)
    return Node(
        key, func.__name__, TaskKind.FUNCTION, func, tuple(Ref(d) for d in deps),
        EMPTY_MAPPING, tuple(deps), options,
    )  # fmt: skip


def hints(workers=2, **durations):
    funcs = {"small": small, "big": big}
    return Coarsening(workers, {function_id(funcs[name]): s for name, s in durations.items()}, {})


def plan(nodes, h):
    return compile_plan(nodes, CAPS, "dask", coarsening={"dask": h})


def groups(p):
    """Every group of the plan's units, as tuples of keys."""
    out = []
    for u in p.units:
        sizes = u.groups or (1,) * len(u.keys)
        start = 0
        for n in sizes:
            out.append(u.keys[start : start + n])
            start += n
    return out


def fan_out(n, func=small, **kw):
    return {f"t{i}": mk(f"t{i}", func=func, **kw) for i in range(n)}


# --------------------------------------------------------------------------- sizes


def test_tiny_measured_tasks_make_one_chunk():
    p = plan(fan_out(1000), hints(small=5e-6))
    assert [len(g) for g in groups(p)] == [1000]
    assert p.remote_tasks == 1


def test_ten_ms_tasks_fill_chunks_up_to_the_bound_in_a_multiple_of_the_workers():
    h = hints(workers=4, small=0.01)
    sizes = [len(g) for g in groups(plan(fan_out(1000), h))]
    bound = chunk_seconds(10.0, h)  # 10 s of work: the scheduler's cost per task counts
    assert h.target < bound < h.max_chunk
    assert sum(sizes) == 1000 and max(sizes) * 0.01 <= bound + 0.01
    assert len(sizes) % 4 == 0 and max(sizes) - min(sizes) <= 1  # balanced over 4 workers
    few = [len(g) for g in groups(plan(fan_out(40), h))]  # 0.4 s of work: the target
    assert max(few) * 0.01 <= h.target and len(few) % 4 == 0


def test_unmeasured_functions_are_spread_over_the_workers():
    sizes = [len(g) for g in groups(plan(fan_out(1000), hints(workers=2)))]
    assert len(sizes) == 2 * UNKNOWN_SPREAD and sum(sizes) == 1000
    many = [len(g) for g in groups(plan(fan_out(5000), hints(workers=2)))]
    assert max(many) <= UNKNOWN_MAX_TASKS and len(many) == ceil(5000 / UNKNOWN_MAX_TASKS)


def test_long_tasks_are_never_grouped():
    p = plan(fan_out(50), hints(small=0.5))
    assert all(len(g) == 1 for g in groups(p)) and not p.coarsened


def test_tasks_with_large_results_are_never_grouped():
    h = Coarsening(2, {function_id(small): 1e-5}, {function_id(small): 5e6})
    assert all(len(g) == 1 for g in groups(plan(fan_out(50), h)))


def test_different_resources_never_share_a_chunk():
    nodes = fan_out(40)
    nodes.update({f"g{i}": mk(f"g{i}", resources={"GPU": 1}) for i in range(40)})
    nodes.update({f"m{i}": mk(f"m{i}", resources={"GPU": 1, "mem": 2}) for i in range(40)})
    p = plan(nodes, hints(small=1e-5))
    for g in groups(p):
        assert len({tuple(sorted(nodes[k].options.resources.items())) for k in g}) == 1
    assert len(groups(p)) == 3


def test_a_chain_is_fused_into_one_remote_task_up_to_the_target():
    chain = {"c0": mk("c0")}
    for i in range(1, 2000):
        chain[f"c{i}"] = mk(f"c{i}", (f"c{i - 1}",))
    assert [len(g) for g in groups(plan(chain, hints(small=1e-5)))] == [2000]
    ten_ms = [len(g) for g in groups(plan(chain, hints(small=0.01)))]
    assert max(ten_ms) == 10 and sum(ten_ms) == 2000
    unknown = [len(g) for g in groups(plan(chain, hints()))]
    assert max(unknown) == UNKNOWN_MAX_TASKS


def test_a_task_with_a_timeout_stays_on_its_own():
    nodes = fan_out(20)
    nodes["slow"] = mk("slow", timeout=1.0)
    p = plan(nodes, hints(small=1e-5))
    assert ("slow",) in groups(p)
    assert all("slow" not in g for g in groups(p) if len(g) > 1)


def test_map_reduce_levels_become_chunks():
    nodes = fan_out(64)
    level = list(nodes)
    j = 0
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[::2], level[1::2], strict=True):
            nodes[f"r{j}"] = mk(f"r{j}", (a, b))
            nxt.append(f"r{j}")
            j += 1
        level = nxt
    p = plan(nodes, hints(small=1e-5))
    assert len(groups(p)) == 7  # one chunk per level: 64, 32, ..., 2, 1
    _assert_valid(nodes, p)


def test_explain_shows_the_chunks_and_why():
    text = plan(fan_out(1000), hints(workers=2, small=0.01)).explain()
    assert "coarsened: 1000 tasks -> 46 remote tasks" in text
    assert "chunk of 22 small: est. 10.0 ms per task, 220.0 ms per chunk (at most 223.6 ms" in text
    text = plan(fan_out(300), hints(workers=2)).explain()
    assert "no measured duration yet: spread over 2 workers" in text
    text = plan({"a": mk("a"), "b": mk("b", ("a",))}, hints(small=2.0)).explain()
    assert "coarsened" not in text
    mixed = fan_out(10)
    mixed.update({f"b{i}": mk(f"b{i}", func=big) for i in range(3)})
    text = plan(mixed, hints(small=1e-5, big=3.0)).explain()
    assert "3 x single big: est. 3.00 s >= 100.0 ms" in text


def test_without_hints_nothing_is_coarsened():
    p = compile_plan(fan_out(100), CAPS, "dask")
    assert not p.coarsened and all(not u.groups for u in p.units)


# --------------------------------------------------------------------------- property


def _assert_valid(nodes, p):
    gs = groups(p)
    keys = [k for g in gs for k in g]
    assert sorted(keys) == sorted(nodes)
    where = {k: i for i, g in enumerate(gs) for k in g}
    for i, g in enumerate(gs):
        inside = set()
        for k in g:
            for d in nodes[k].deps:
                # inputs come from earlier groups or earlier in the same group
                assert where[d] < i or (where[d] == i and d in inside), (k, d)
            inside.add(k)
        if len(g) > 1:
            assert len({tuple(nodes[k].options.resources.items()) for k in g}) == 1


@st.composite
def dags(draw):
    n = draw(st.integers(1, 80))
    nodes = {}
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        kind = draw(st.integers(0, 5))  # 0: GPU, 1: big, else small
        nodes[f"t{i}"] = mk(
            f"t{i}",
            [f"t{d}" for d in deps],
            func=big if kind == 1 else small,
            resources={"GPU": 1} if kind == 0 else None,
        )
    est = draw(st.sampled_from([None, 1e-5, 0.01, 0.05, 0.3]))
    workers = draw(st.integers(1, 8))
    return nodes, est, workers


@settings(max_examples=100, deadline=None)
@given(dags())
def test_property_groups_are_a_valid_layout_and_respect_the_bounds(case):
    nodes, est, workers = case
    h = Coarsening(workers, {} if est is None else {function_id(small): est}, {})
    p = plan(nodes, h)
    _assert_valid(nodes, p)
    work = (est or 0.0) * sum(1 for n in nodes.values() if n.func is small)
    for g in groups(p):
        if len(g) == 1:
            continue
        if est is not None and all(nodes[k].func is small for k in g):
            # the load-balance bound: no task waits behind more than the chunk bound
            assert est * len(g) <= chunk_seconds(work, h) + est + 1e-9
        # long tasks are never grouped
        assert not (est is not None and est >= h.long and any(nodes[k].func is small for k in g))

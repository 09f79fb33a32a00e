"""Graph persistence, reference handling, tokens and the compiler passes."""

from __future__ import annotations

import math
import threading
from collections import namedtuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow_graph.compiler import (
    ENGINE_BACKEND,
    Capabilities,
    Plan,
    assign_backends,
    compile_plan,
    cull,
    fuse,
    partition,
    validate,
)
from asyncflow_graph.errors import (
    BackendNotFoundError,
    ConfigurationError,
    PromptNotSupportedError,
    SerializationError,
)
from asyncflow_graph.graph import Graph
from asyncflow_graph.spec import (
    EMPTY_MAPPING,
    Node,
    Ref,
    TaskKind,
    TaskOptions,
    extract_refs,
    register_reference_type,
    substitute,
    tokenize,
)


def _f(*args, **kwargs):
    return 1 + sum(args)


def mk(key, deps=(), backend=None, kind=TaskKind.FUNCTION, func=_f, timeout=None):
    return Node(
        key,
        key,
        kind,
        func,
        tuple(Ref(d) for d in deps),
        EMPTY_MAPPING,
        tuple(deps),
        TaskOptions(backend=backend, timeout=timeout),
    )


def chain(n, backend=None, prefix="n"):
    nodes = {}
    prev = None
    for i in range(n):
        key = f"{prefix}{i}"
        nodes[key] = mk(key, () if prev is None else (prev,), backend)
        prev = key
    return nodes


CAPS = {"x": Capabilities(), "y": Capabilities(), "z": Capabilities()}


# --------------------------------------------------------------------------- graph


def test_merge_returns_new_graph_and_old_is_unchanged():
    a, b, c = mk("a"), mk("b", ("a",)), mk("c", ("b",))
    g1 = Graph([a])
    g2 = g1.merge([b, c])
    assert g2 is not g1
    assert len(g1) == 1 and list(g1) == ["a"]
    assert "b" not in g1
    assert len(g2) == 3 and set(g2) == {"a", "b", "c"}
    assert g2["a"] is a and g2["c"] is c
    g3 = g1.add(mk("other"))
    assert set(g3) == {"a", "other"} and set(g2) == {"a", "b", "c"}
    with pytest.raises(KeyError):
        g1["b"]
    assert g1.get("b") is None


def test_merge_nothing_new_returns_same_graph_and_same_node_is_allowed():
    a = mk("a")
    g = Graph([a])
    assert g.merge([a]) is g
    assert g.merge([]) is g


def test_duplicate_key_with_different_node_raises():
    g = Graph([mk("a")])
    with pytest.raises(ConfigurationError, match="duplicate"):
        g.add(mk("a"))
    with pytest.raises(ConfigurationError):
        Graph().merge([mk("k"), mk("k")])


def test_structure_sharing_keeps_layers_logarithmic():
    g = Graph()
    graphs = []
    max_layers = 0
    for i in range(10_000):
        g = g.add(mk(f"k{i}", (f"k{i - 1}",) if i else ()))
        max_layers = max(max_layers, len(g._layers))
        if i % 1000 == 0:
            graphs.append((g, i + 1))
    assert len(g) == 10_000
    assert max_layers <= 2 * math.log2(10_000) + 2
    # every old version is still intact
    for old, n in graphs:
        assert len(old) == n
        assert f"k{n - 1}" in old and f"k{n}" not in old
    assert g["k0"].key == "k0" and g["k9999"].deps == ("k9998",)


def test_dependents_ancestors_cull_toposort():
    #   a -> b -> d ; a -> c -> d ; e isolated
    g = Graph([mk("a"), mk("b", ("a",)), mk("c", ("a",)), mk("d", ("b", "c")), mk("e")])
    assert set(g.dependents("a")) == {"b", "c"}
    assert g.dependents("d") == ()
    assert g.dependencies("d") == ("b", "c")
    assert g.ancestors(["d"]) == {"a", "b", "c", "d"}
    assert g.ancestors(["b"]) == {"a", "b"}
    assert g.ancestors(["missing"]) == set()
    sub = g.cull(["c"])
    assert set(sub) == {"a", "c"}
    assert set(g) == {"a", "b", "c", "d", "e"}  # cull does not modify
    order = g.toposort()
    assert sorted(order) == sorted(g)
    pos = {k: i for i, k in enumerate(order)}
    for k in g:
        for d in g[k].deps:
            assert pos[d] < pos[k]


def test_toposort_detects_cycle():
    g = Graph([mk("a", ("b",)), mk("b", ("a",))])
    with pytest.raises(ConfigurationError, match="cycle"):
        g.toposort()


# --------------------------------------------------------------------------- references


class FakeHandle:
    host = None  # the builder a handle belongs to (extract_refs checks it)

    def __init__(self, key):
        self.key = key


register_reference_type(FakeHandle)

Pair = namedtuple("Pair", "left right")


def test_extract_refs_top_level_is_shallow():
    h1, h2 = FakeHandle("a"), FakeHandle("b")
    args, kwargs, deps, deep = extract_refs((h1, 3, "s"), {"y": h2, "z": 1})
    assert args == (Ref("a"), 3, "s")
    assert kwargs == {"y": Ref("b"), "z": 1}
    assert deps == ("a", "b")
    assert deep is False
    a2, k2 = substitute(args, kwargs, {"a": 10, "b": 20}, deep)
    assert a2 == (10, 3, "s") and k2 == {"y": 20, "z": 1}


def test_extract_refs_without_handles_keeps_objects():
    args, kw = (1, [2, 3], {"a": (4,)}), {"k": [5]}
    new_args, new_kw, deps, deep = extract_refs(args, kw)
    assert new_args is args and new_kw is kw
    assert deps == () and deep is False


def test_extract_refs_and_substitute_nested_containers():
    ha, hb, hc = FakeHandle("a"), FakeHandle("b"), FakeHandle("c")
    args = (ha, [hb, 3], {"k": (hc, "x")}, Pair(hb, 5))
    kwargs = {"s": {ha}, "fs": frozenset([hc]), "t": ((ha,),)}
    new_args, new_kwargs, deps, deep = extract_refs(args, kwargs)
    assert deps == ("a", "b", "c")
    assert deep is True
    assert new_args[0] == Ref("a")
    assert new_args[1] == [Ref("b"), 3]
    assert new_args[2] == {"k": (Ref("c"), "x")}
    assert type(new_args[3]) is Pair and new_args[3] == Pair(Ref("b"), 5)
    assert new_kwargs["s"] == {Ref("a")}
    assert new_kwargs["fs"] == frozenset([Ref("c")]) and type(new_kwargs["fs"]) is frozenset
    assert new_kwargs["t"] == ((Ref("a"),),)
    # the inputs were not mutated
    assert args[1][0] is hb and kwargs["s"] == {ha}

    values = {"a": 1, "b": 2, "c": 3}
    sa, skw = substitute(new_args, new_kwargs, values, deep)
    assert sa == (1, [2, 3], {"k": (3, "x")}, Pair(2, 5))
    assert type(sa[3]) is Pair
    assert skw == {"s": {1}, "fs": frozenset([3]), "t": ((1,),)}


def test_tokenize_is_deterministic():
    t1 = tokenize(_f, (1, "a", [1, 2], {"x": 1, "y": {2, 3}}), {"b": 2, "a": 1})
    t2 = tokenize(_f, (1, "a", [1, 2], {"y": {3, 2}, "x": 1}), {"a": 1, "b": 2})
    assert t1 == t2
    assert tokenize(_f, (Ref("k"),), {}) == tokenize(_f, (Ref("k"),), {})
    assert tokenize(_f, (1,), {}) != tokenize(_f, (2,), {})
    assert tokenize(_f, (Ref("k"),), {}) != tokenize(_f, (Ref("j"),), {})
    assert tokenize(_f, (1,), {}) != tokenize(mk, (1,), {})
    assert tokenize(_f, ([1],), {}) != tokenize(_f, ((1,),), {})
    assert tokenize(_f, (1,), {}) != tokenize(_f, ("1",), {})


def test_tokenize_unpicklable_falls_back_to_identity():
    lock1, lock2 = threading.Lock(), threading.Lock()
    assert tokenize(_f, (lock1,), {}) == tokenize(_f, (lock1,), {})
    assert tokenize(_f, (lock1,), {}) != tokenize(_f, (lock2,), {})


# --------------------------------------------------------------------------- passes


def test_cull_exactness():
    nodes = {
        "a": mk("a"),
        "b": mk("b", ("a",)),
        "c": mk("c", ("b",)),
        "d": mk("d", ("a",)),
        "e": mk("e"),
    }
    assert set(cull(nodes, ["c"])) == {"a", "b", "c"}
    assert set(cull(nodes, ["d", "e"])) == {"a", "d", "e"}
    assert set(cull(nodes, [])) == set()
    plan = compile_plan(nodes, CAPS, "x", targets=["b"])
    assert set(plan.nodes) == {"a", "b"}
    assert sorted(k for p in plan.partitions for k in p.keys) == ["a", "b"]


def test_assign_backends_default_and_blocks():
    nodes = {"a": mk("a", backend="y"), "b": mk("b"), "blk": mk("blk", kind=TaskKind.BLOCK)}
    assert assign_backends(nodes, "x") == {"a": "y", "b": "x", "blk": ENGINE_BACKEND}


def test_validate_unknown_backend():
    nodes = {"a": mk("a", backend="nope"), "b": mk("b", backend="x")}
    errors = validate(nodes, assign_backends(nodes, "x"), CAPS)
    assert set(errors) == {"a"}
    assert isinstance(errors["a"], BackendNotFoundError)
    assert isinstance(errors["a"], KeyError)
    assert "nope" in str(errors["a"])


def test_validate_prompt_without_support():
    caps = {"cpu": Capabilities(supports_prompts=False), "ai": Capabilities(supports_prompts=True)}
    nodes = {
        "p1": mk("p1", backend="cpu", kind=TaskKind.PROMPT),
        "p2": mk("p2", backend="ai", kind=TaskKind.PROMPT),
    }
    errors = validate(nodes, assign_backends(nodes, "cpu"), caps)
    assert set(errors) == {"p1"}
    assert isinstance(errors["p1"], PromptNotSupportedError)
    assert isinstance(errors["p1"], NotImplementedError)


def _cloudpickles(obj):
    import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception:
        return False
    return True


def test_validate_needs_pickle():
    lock = threading.Lock()
    bad = lambda: lock  # noqa: E731
    caps = {"proc": Capabilities(needs_pickle=True), "thr": Capabilities()}
    nodes = {
        "bad": mk("bad", backend="proc", func=bad),
        "ok": mk("ok", backend="proc", func=lambda: 1),
        "thread": mk("thread", backend="thr", func=bad),
    }
    errors = validate(nodes, assign_backends(nodes, "thr"), caps, pickles=_cloudpickles)
    assert set(errors) == {"bad"}
    assert isinstance(errors["bad"], SerializationError)
    # without a pickles checker nothing is checked
    assert validate(nodes, assign_backends(nodes, "thr"), caps) == {}


def test_fuse_long_chain_into_one_unit():
    nodes = chain(1000, "x")
    units = fuse(nodes, assign_backends(nodes, "x"))
    assert len(units) == 1
    assert units[0].keys == tuple(nodes)
    assert units[0].inputs == ()
    assert units[0].backend == "x"


def test_fuse_splits_on_backend_switch():
    nodes = chain(6, "x")
    for k in ("n3", "n4", "n5"):
        nodes[k] = mk(k, nodes[k].deps, "y")
    units = fuse(nodes, assign_backends(nodes, "x"))
    assert [u.keys for u in units] == [("n0", "n1", "n2"), ("n3", "n4", "n5")]
    assert [u.backend for u in units] == ["x", "y"]
    assert units[1].inputs == ("n2",)


def test_fuse_node_with_two_dependents_ends_chain():
    nodes = {
        "a": mk("a", (), "x"),
        "b": mk("b", ("a",), "x"),
        "c": mk("c", ("b",), "x"),
        "d": mk("d", ("b",), "x"),
    }
    units = fuse(nodes, assign_backends(nodes, "x"))
    assert [u.keys for u in units] == [("a", "b"), ("c",), ("d",)]


def test_fuse_respects_timeout_errors_and_no_fuse():
    nodes = chain(4, "x")
    nodes["n2"] = mk("n2", ("n1",), "x", timeout=1.0)
    units = fuse(nodes, assign_backends(nodes, "x"))
    assert [u.keys for u in units] == [("n0", "n1"), ("n2",), ("n3",)]  # n2 alone: its timeout
    nodes = chain(3, "x")
    assert len(fuse(nodes, assign_backends(nodes, "x"), errors={"n1"})) == 3
    assert len(fuse(nodes, assign_backends(nodes, "x"), no_fuse={"x"})) == 3


def _partition_checks(plan: Plan):
    """Every node in exactly one unit/partition, acyclic partition DAG, maximality."""
    seen = [k for p in plan.partitions for k in p.keys]
    assert sorted(seen) == sorted(plan.nodes)
    assert len(seen) == len(set(seen))
    part_of = {k: p.id for p in plan.partitions for k in p.keys}
    by_id = {p.id: p for p in plan.partitions}
    assert len(by_id) == len(plan.partitions)
    for p in plan.partitions:
        assert all(plan.backend_of[k] == p.backend for k in p.keys)
        assert all(u.backend == p.backend for u in p.units)
        # dependencies are exactly the partitions the nodes' deps live in
        expected = {part_of[d] for k in p.keys for d in plan.nodes[k].deps if d in part_of}
        expected.discard(p.id)
        assert set(p.dependencies) == expected
    # acyclic: Kahn's algorithm consumes every partition
    indeg = {i: len(p.dependencies) for i, p in by_id.items()}
    users = {i: [j for j, q in by_id.items() if i in q.dependencies] for i in by_id}
    ready = [i for i, n in indeg.items() if n == 0]
    order = []
    while ready:
        i = ready.pop()
        order.append(i)
        for j in users[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    assert len(order) == len(by_id), "partition DAG has a cycle"
    # reachability
    reach = {i: set() for i in by_id}  # reach[i] = partitions i transitively depends on
    for i in order:
        for d in by_id[i].dependencies:
            reach[i] |= reach[d] | {d}
    # maximality: two same-backend partitions can't merge iff a path between them
    # runs through a third partition
    ids = sorted(by_id)
    for ai, a in enumerate(ids):
        for b in ids[ai + 1 :]:
            if by_id[a].backend != by_id[b].backend:
                continue
            via = any(c != a and a in reach[c] for c in by_id[b].dependencies)
            via = via or any(c != b and b in reach[c] for c in by_id[a].dependencies)
            assert via, f"partitions P{a} and P{b} could be merged"
    return order


def test_partition_diamond_three_backends():
    #     a(x)
    #    /    \
    #  b(x)   c(y)
    #    \    /
    #     d(z)
    nodes = {
        "a": mk("a", (), "x"),
        "b": mk("b", ("a",), "x"),
        "c": mk("c", ("a",), "y"),
        "d": mk("d", ("b", "c"), "z"),
    }
    plan = compile_plan(nodes, CAPS, "x")
    groups = sorted((p.backend, sorted(p.keys)) for p in plan.partitions)
    assert groups == [("x", ["a", "b"]), ("y", ["c"]), ("z", ["d"])]
    _partition_checks(plan)
    part = {p.backend: p for p in plan.partitions}
    assert part["y"].dependencies == {part["x"].id}
    assert part["z"].dependencies == {part["x"].id, part["y"].id}


def test_partition_diamond_same_backend_ends_cannot_merge():
    # a(x) -> b(y) -> d(x); a and d are both on x but b sits between them
    nodes = {
        "a": mk("a", (), "x"),
        "b": mk("b", ("a",), "y"),
        "c": mk("c", ("a",), "z"),
        "d": mk("d", ("b", "c"), "x"),
    }
    plan = compile_plan(nodes, CAPS, "x")
    assert sorted(sorted(p.keys) for p in plan.partitions) == [["a"], ["b"], ["c"], ["d"]]
    _partition_checks(plan)


def test_partition_merges_independent_same_backend_work():
    nodes = {
        "a": mk("a", (), "x"),
        "b": mk("b", (), "y"),
        "c": mk("c", ("b",), "x"),
        "e": mk("e", (), "x"),
    }
    units = fuse(nodes, assign_backends(nodes, "x"))
    parts = partition(units, nodes, assign_backends(nodes, "x"))
    groups = sorted((p.backend, sorted(p.keys)) for p in parts)
    # a, e and c can share one x partition: b (on y) only feeds c
    assert groups == [("x", ["a", "c", "e"]), ("y", ["b"])]


def test_plan_explain_mentions_partitions_backends_errors():
    nodes = {
        "a": mk("a", (), "x"),
        "b": mk("b", ("a",), "y"),
        "bad": mk("bad", (), "nowhere"),
    }
    plan = compile_plan(nodes, CAPS, "x")
    text = plan.explain()
    assert "3 tasks" in text
    assert "partitions" in text
    assert "P0" in text and "P1" in text
    assert "'x'" in text and "'y'" in text
    assert "errors" in text and "BackendNotFoundError" in text and "nowhere" in text
    assert str(plan) == text
    assert isinstance(plan.errors["bad"], BackendNotFoundError)


def test_plan_explain_shows_fused_chains():
    plan = compile_plan(chain(10, "x"), CAPS, "x")
    text = plan.explain()
    assert "fused x10" in text
    assert "(+4)" in text
    assert len(plan.units) == 1 and len(plan) == 10


# --------------------------------------------------------------------------- properties


@st.composite
def random_dags(draw, max_nodes=25):
    n = draw(st.integers(1, max_nodes))
    nodes = {}
    keys = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)) if keys else []
        backend = draw(st.sampled_from(["x", "y", "z"]))
        key = f"k{i}"
        nodes[key] = mk(key, tuple(deps), backend)
        keys.append(key)
    return nodes


def _naive(nodes):
    values = {}
    for key in Graph(nodes).toposort():
        values[key] = 1 + sum(values[d] for d in nodes[key].deps)
    return values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dags())
def test_property_plan_structure_and_evaluation(nodes):
    plan = compile_plan(nodes, CAPS, "x")
    assert plan.errors == {}
    units = plan.units
    in_units = [k for u in units for k in u.keys]
    assert sorted(in_units) == sorted(nodes)
    assert len(in_units) == len(set(in_units))
    for u in units:
        assert u.inputs == nodes[u.keys[0]].deps
        for prev, nxt in zip(u.keys, u.keys[1:], strict=False):
            assert nodes[nxt].deps == (prev,)
        assert len({plan.backend_of[k] for k in u.keys}) == 1
    order = _partition_checks(plan)
    # evaluate the plan partition by partition
    by_id = {p.id: p for p in plan.partitions}
    values = {}
    for pid in order:
        for unit in by_id[pid].units:
            for key in unit.keys:
                deps = nodes[key].deps
                assert all(d in values for d in deps), f"{key} evaluated before its inputs"
                values[key] = 1 + sum(values[d] for d in deps)
    assert values == _naive(nodes)

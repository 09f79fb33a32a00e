"""The pure RunState state machine: events in, instructions out."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow_graph.compiler import Capabilities, Unit, compile_plan
from asyncflow_graph.errors import DependencyFailureError
from asyncflow_graph.executor.instructions import Ended, Ready
from asyncflow_graph.executor.state import RunState
from asyncflow_graph.spec import EMPTY_MAPPING, Node, Ref, TaskKind, TaskOptions

OPTS = TaskOptions()


def _f(*args):
    return 1 + sum(args)


def mk(key, deps=()):
    return Node(
        key,
        f"name_{key}",
        TaskKind.FUNCTION,
        _f,
        tuple(Ref(d) for d in deps),
        EMPTY_MAPPING,
        tuple(deps),
        OPTS,
    )


def split(instructions):
    """(ready jobs, ended keys) of a sequence of instructions."""
    ready, ended = [], []
    for ins in instructions:
        if isinstance(ins, Ready):
            ready += ins.jobs
        elif isinstance(ins, Ended):
            ended += ins.keys
    return ready, ended


def add(state, *args, **kwargs):
    return split(state.add(*args, **kwargs))


def done(state, key, value):
    ready = state.done(key, value)  # a Ready instruction or None
    assert ready is None or (isinstance(ready, Ready) and ready.jobs and not ready.later)
    return [] if ready is None else ready.jobs


def fail(state, key, exc):
    return split(state.fail(key, exc))[1]


def cancel(state, key, msg=None):
    return split(state.cancel(key, msg))[1]


def single_units(nodes):
    """One unit per node (no fusion)."""
    return [Unit("x", (k,), n.deps) for k, n in nodes.items()]


def heads(jobs):
    return sorted(j.unit.keys[0] for j in jobs)


def diamond():
    return {
        "a": mk("a"),
        "b": mk("b", ("a",)),
        "c": mk("c", ("a",)),
        "d": mk("d", ("b", "c")),
    }


def test_add_returns_roots_ready():
    nodes = diamond()
    st_ = RunState()
    ready, ended = add(st_, nodes, single_units(nodes), {})
    assert heads(ready) == ["a"]
    assert ended == []
    assert st_.open_count == 4
    assert all(st_.is_open(k) and st_.knows(k) for k in nodes)
    assert not st_.knows("zzz")


def test_readiness_exactly_once_and_only_when_all_inputs_done():
    nodes = diamond()
    s = RunState()
    ready, _ = add(s, nodes, single_units(nodes), {})
    assert heads(done(s, "a", 1)) == ["b", "c"]
    assert done(s, "b", 2) == []  # d still waits for c
    assert heads(done(s, "c", 2)) == ["d"]
    assert done(s, "d", 5) == []
    assert s.values == {"a": 1, "b": 2, "c": 2, "d": 5}
    assert s.open_count == 0
    # a late duplicate result is dropped
    assert done(s, "a", 99) == []
    assert s.values["a"] == 1


def test_add_against_already_done_inputs():
    s = RunState()
    add(s, {"a": mk("a")}, [Unit("x", ("a",), ())], {})
    done(s, "a", 1)
    ready, ended = add(s, {"b": mk("b", ("a",))}, [Unit("x", ("b",), ("a",))], {})
    assert heads(ready) == ["b"] and ended == []


def test_add_unknown_dependency_raises():
    s = RunState()
    with pytest.raises(KeyError):
        add(s, {"b": mk("b", ("ghost",))}, [Unit("x", ("b",), ("ghost",))], {})


def test_failure_propagates_as_dependency_failure():
    nodes = diamond()
    s = RunState()
    add(s, nodes, single_units(nodes), {})
    done(s, "a", 1)
    err = ValueError("boom")
    ended = fail(s, "b", err)
    assert sorted(ended) == ["b", "d"]
    assert s.failures["b"] is err
    dfe = s.failures["d"]
    assert isinstance(dfe, DependencyFailureError)
    assert dfe.failed_dependencies == ["name_b"]
    assert dfe.root_cause is err and dfe.__cause__ is err
    assert "name_d" in str(dfe)
    # c is unaffected and finishing it readies nothing (d already ended)
    assert s.is_open("c")
    assert done(s, "c", 2) == []
    assert "d" not in s.values


def test_failure_nested_along_chain():
    nodes = {"a": mk("a"), "b": mk("b", ("a",)), "c": mk("c", ("b",))}
    s = RunState()
    add(s, nodes, single_units(nodes), {})
    err = RuntimeError("root")
    assert fail(s, "a", err) == ["a", "b", "c"]
    b, c = s.failures["b"], s.failures["c"]
    assert isinstance(b, DependencyFailureError) and isinstance(c, DependencyFailureError)
    assert b.root_cause is err
    assert c.root_cause is b and c.__cause__ is b
    assert c.failed_dependencies == ["name_b"]
    assert s.open_count == 0


def test_failure_inside_fused_chain():
    nodes = {"a": mk("a"), "b": mk("b", ("a",)), "c": mk("c", ("b",))}
    s = RunState()
    ready, _ = add(s, nodes, [Unit("x", ("a", "b", "c"), ())], {})
    assert heads(ready) == ["a"]
    done(s, "a", 1)
    err = ValueError("mid")
    assert fail(s, "b", err) == ["b", "c"]
    assert s.failures["b"] is err
    assert s.failures["c"].root_cause is err
    assert s.values == {"a": 1}


def test_compile_errors_end_at_add():
    nodes = {"a": mk("a"), "b": mk("b", ("a",))}
    err = KeyError("no backend")
    s = RunState()
    ready, ended = add(s, nodes, single_units(nodes), {"a": err})
    assert ready == []
    assert sorted(ended) == ["a", "b"]
    assert s.failures["a"] is err
    assert isinstance(s.failures["b"], DependencyFailureError)


def test_add_after_input_failed_or_cancelled():
    s = RunState()
    add(s, {"a": mk("a"), "c": mk("c")}, [Unit("x", ("a",), ()), Unit("x", ("c",), ())], {})
    fail(s, "a", ValueError("x"))
    cancel(s, "c", "bye")
    ready, ended = add(
        s,
        {"b": mk("b", ("a",)), "d": mk("d", ("c",))},
        [Unit("x", ("b",), ("a",)), Unit("x", ("d",), ("c",))],
        {},
    )
    assert ready == []
    assert sorted(ended) == ["b", "d"]
    assert isinstance(s.failures["b"], DependencyFailureError)
    assert s.cancelled["d"] == "bye"


def test_cancellation_propagates_as_cancellation():
    nodes = diamond()
    s = RunState()
    add(s, nodes, single_units(nodes), {})
    ended = cancel(s, "a", "stop")
    assert sorted(ended) == ["a", "b", "c", "d"]
    assert s.cancelled == {"a": "stop", "b": "stop", "c": "stop", "d": "stop"}
    assert s.failures == {}
    assert s.open_count == 0
    # ended keys never change again
    assert fail(s, "a", ValueError()) == []
    assert cancel(s, "b") == []
    assert done(s, "c", 1) == []
    assert "a" not in s.failures and "c" not in s.values


def test_precancelled_at_add():
    nodes = {"a": mk("a"), "b": mk("b", ("a",))}
    s = RunState()
    ready, ended = add(s, nodes, single_units(nodes), {}, cancelled={"a": "early"})
    assert ready == []
    assert sorted(ended) == ["a", "b"]
    assert s.cancelled == {"a": "early", "b": "early"}


def test_retry_reopens_chain_from_key():
    nodes = {"a": mk("a"), "b": mk("b", ("a",))}
    s = RunState()
    ready, _ = add(s, nodes, [Unit("x", ("a", "b"), ())], {})
    job = ready[0]
    done(s, "a", 1)
    again = s.retry(job, "b")
    assert again.unit.keys == ("b",) and again.unit.inputs == ("a",)
    assert again.attempts == job.attempts + 1
    assert s.job_of("b") is again
    done(s, "b", 2)
    assert s.values == {"a": 1, "b": 2}


N = 10_000


def _long_chain():
    nodes = {"k0": mk("k0")}
    for i in range(1, N):
        nodes[f"k{i}"] = mk(f"k{i}", (f"k{i - 1}",))
    return nodes


def test_long_chain_fails_without_recursion():
    nodes = _long_chain()
    s = RunState()
    add(s, nodes, single_units(nodes), {})
    ended = fail(s, "k0", ValueError("root"))
    assert len(ended) == N
    assert s.open_count == 0
    last = s.failures[f"k{N - 1}"]
    assert isinstance(last, DependencyFailureError)
    assert last.failed_dependencies == [f"name_k{N - 2}"]


def test_long_chain_cancels_without_recursion():
    nodes = _long_chain()
    s = RunState()
    add(s, nodes, single_units(nodes), {})
    ended = cancel(s, "k0", "m")
    assert len(ended) == N
    assert set(s.cancelled.values()) == {"m"}


def test_long_fused_chain_fails_without_recursion():
    nodes = _long_chain()
    s = RunState()
    add(s, nodes, [Unit("x", tuple(nodes), ())], {})
    done(s, "k0", 1)
    ended = fail(s, "k1", ValueError("root"))
    assert len(ended) == N - 1
    assert s.open_count == 0


# --------------------------------------------------------------------------- property


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 30))
    nodes = {}
    keys = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)) if keys else []
        key = f"k{i}"
        nodes[key] = mk(key, tuple(deps))
        keys.append(key)
    failing = draw(st.sets(st.sampled_from(keys), max_size=n))
    seed = draw(st.integers(0, 2**32 - 1))
    fused = draw(st.booleans())
    return nodes, failing, seed, fused


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_random_dag_failures(scenario):
    nodes, failing, seed, fused = scenario
    rng = random.Random(seed)
    if fused:
        units = compile_plan(nodes, {"x": Capabilities()}, "x").units
    else:
        units = single_units(nodes)
    ancestors = {}
    for k, node in nodes.items():  # insertion order is topological
        anc = set()
        for d in node.deps:
            anc |= ancestors[d] | {d}
        ancestors[k] = anc

    s = RunState()
    ready, ended = add(s, nodes, units, {})
    assert ended == []
    seen_ready = set()
    raised = set()

    def note_ready(jobs):
        for j in jobs:
            head = j.unit.keys[0]
            assert head not in seen_ready, f"{head} became ready twice"
            seen_ready.add(head)
            assert not (ancestors[head] & set(s.failures)), "ready after an ancestor failed"
            assert all(d in s.values for d in j.unit.inputs)

    note_ready(ready)
    pending = list(ready)
    while pending:
        job = pending.pop(rng.randrange(len(pending)))
        for key in job.unit.keys:
            assert s.is_open(key)
            if key in failing:
                raised.add(key)
                fail(s, key, ValueError(key))
                break
            new = done(s, key, 1 + sum(s.values[d] for d in nodes[key].deps))
            note_ready(new)
            pending.extend(new)

    # every key ended, in exactly one outcome
    assert s.open_count == 0
    assert set(s.values) | set(s.failures) == set(nodes)
    assert not (set(s.values) & set(s.failures))
    assert s.cancelled == {}
    expected_failed = {k for k in nodes if k in failing or ancestors[k] & failing}
    assert set(s.failures) == expected_failed
    for k in expected_failed:
        if k in raised:
            assert type(s.failures[k]) is ValueError
            assert not (ancestors[k] & set(s.failures))
        else:
            assert isinstance(s.failures[k], DependencyFailureError)
            assert s.failures[k].failed_dependencies
    # a failing key whose ancestor failed never ran
    assert raised == {k for k in failing if not (ancestors[k] & failing)}


def test_a_running_report_after_the_end_is_dropped():
    s = RunState()
    add(s, {"a": mk("a")}, [Unit("x", ("a",), ())], {})
    cancel(s, "a", "stop")
    s.running("a")  # late, e.g. from a worker thread through ThreadSafeReporter
    assert s.started() == set()
    assert s.outcome("a") == "CANCELLED"

"""The result cache inside the engine: compile-time pruning, submit-time lookups,
lazy loading, what explain/visualize/the event log show, and the options."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from pathlib import Path

import pytest

import asyncflow_graph as afg
from asyncflow_graph import InputFile, LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.cache.store import SMALL_ENTRY
from asyncflow_graph.errors import ConfigurationError
from asyncflow_graph.telemetry.eventlog import load_tasks, record_events

CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


async def _engine(tmp_path: Path, **kwargs) -> WorkflowEngine:
    return await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path, **kwargs)


def _define(flow: WorkflowEngine, **cache_options):
    @flow.function_task(**cache_options)
    def load(n):
        CALLS["load"] += 1
        return list(range(n))

    @flow.function_task(**cache_options)
    async def total(xs):
        CALLS["total"] += 1
        return sum(xs)

    return load, total


async def test_second_run_is_served_from_the_cache_and_explain_shows_it(tmp_path):
    flow = await _engine(tmp_path, cache=True)
    load, total = _define(flow)
    assert await total(load(10)) == 45
    await flow.shutdown()
    first = flow.cache.stats()
    assert (first.hits, first.misses) == (0, 2) and first.bytes_written > 0

    flow = await _engine(tmp_path, cache=True)
    load, total = _define(flow)
    t = total(load(10))
    plan = flow.explain(t)
    assert "backend='@cache' tasks=2" in plan and "cache hits: nothing runs" in plan
    assert await t == 45
    await flow.shutdown()
    assert CALLS == {"load": 1, "total": 1}
    stats = flow.cache.stats()
    assert (stats.hits, stats.misses) == (2, 0) and stats.time_saved > 0
    assert (tmp_path / ".asyncflow-cache" / "index.sqlite").exists()


async def test_engines_without_cache_make_no_cache_directory(tmp_path):
    flow = await _engine(tmp_path)
    load, total = _define(flow)
    assert await total(load(3)) == 3
    await flow.shutdown()
    assert not (tmp_path / ".asyncflow-cache").exists()


async def test_upstream_rerun_with_equal_result_keeps_dependents_cached(tmp_path):
    async def run(n: int) -> int:
        flow = await _engine(tmp_path)

        @flow.function_task  # not cached: runs every time
        def source(n):
            CALLS["source"] += 1
            return [n % 2, 7]

        @flow.function_task(cache=True)
        def expensive(xs):
            CALLS["expensive"] += 1
            return sum(xs)

        @flow.function_task(cache=True)
        def report(x):
            CALLS["report"] += 1
            return f"total={x}"

        try:
            return await report(expensive(source(n)))
        finally:
            await flow.shutdown()

    assert await run(1) == "total=8"
    assert await run(3) == "total=8"  # source reran, with an equal result
    assert CALLS == {"source": 2, "expensive": 1, "report": 1}
    assert await run(2) == "total=7"  # another result: its dependents run
    assert CALLS == {"source": 3, "expensive": 2, "report": 2}


async def test_large_values_load_only_when_needed(tmp_path):
    size = SMALL_ENTRY * 8

    async def run() -> tuple[WorkflowEngine, object, object]:
        flow = await _engine(tmp_path, cache=True)

        @flow.function_task
        def big():
            CALLS["big"] += 1
            return b"x" * size

        @flow.function_task
        def length(b):
            CALLS["length"] += 1
            return len(b)

        b = big()
        return flow, b, length(b)

    flow, b, n = await run()
    assert await n == size
    await flow.shutdown()

    flow, b, n = await run()
    assert await n == size  # both hits: the big value is never read
    assert flow.cache.stats().bytes_read < 100
    assert await b == b"x" * size  # awaiting its handle loads it
    assert flow.cache.stats().bytes_read >= size
    await flow.shutdown()
    assert CALLS == {"big": 1, "length": 1}


async def test_a_non_cached_dependent_loads_a_large_hit(tmp_path):
    size = SMALL_ENTRY * 4
    for _ in range(2):
        flow = await _engine(tmp_path)

        @flow.function_task(cache=True)
        def big():
            CALLS["big"] += 1
            return bytes(size)

        @flow.function_task
        async def count(b):
            CALLS["count"] += 1
            return len(b)

        assert await count(big()) == size
        await flow.shutdown()
    assert CALLS == {"big": 1, "count": 2}


async def test_unpicklable_result_runs_uncached_with_one_warning(tmp_path, caplog):
    flow = await _engine(tmp_path)

    @flow.function_task(cache=True)
    def make_lock(i):
        CALLS["lock"] += 1
        return threading.Lock()

    with caplog.at_level(logging.WARNING, logger="asyncflow_graph.cache"):
        locks = await asyncio.gather(make_lock(1), make_lock(2))
    assert all(hasattr(lock, "acquire") for lock in locks)
    warnings = [r.getMessage() for r in caplog.records if "not cached" in r.getMessage()]
    assert len(warnings) == 1 and "'make_lock'" in warnings[0] and "pickle" in warnings[0]
    assert flow.cache.stats().uncacheable == 2
    await flow.shutdown()


async def test_unhashable_argument_runs_uncached_with_one_warning(tmp_path, caplog):
    flow = await _engine(tmp_path)

    @flow.function_task(cache=True)
    def use(lock):
        CALLS["use"] += 1
        return 1

    with caplog.at_level(logging.WARNING, logger="asyncflow_graph.cache"):
        assert await use(threading.Lock()) == 1
    assert any("'use' is not cached" in r.getMessage() for r in caplog.records)
    await flow.shutdown()


async def test_cache_false_version_and_ignore(tmp_path):
    async def run(cache=None, version=None, verbose=False):
        flow = await _engine(tmp_path, cache=cache)

        @flow.function_task(cache=True, cache_version=version, cache_ignore=("verbose",))
        def simulate(x, verbose=False):
            CALLS["simulate"] += 1
            return x * 2

        try:
            return await simulate(21, verbose=verbose)
        finally:
            await flow.shutdown()

    assert await run() == 42
    assert await run(verbose=True) == 42  # an ignored argument
    assert CALLS["simulate"] == 1
    assert await run(cache=False) == 42  # off: runs, even with cache=True on the task
    assert await run(version=2) == 42  # a bumped version: runs
    assert await run(version=2) == 42
    assert CALLS["simulate"] == 3


async def test_executable_task_is_keyed_by_command_and_input_content(tmp_path):
    data = tmp_path / "input.txt"
    log = tmp_path / "runs.log"

    async def run() -> str:
        flow = await _engine(tmp_path, cache=True)

        @flow.executable_task
        def show(f):
            return f"echo ran >> {log}; cat {f.filepath}"

        try:
            return await show(InputFile(data))
        finally:
            await flow.shutdown()

    data.write_text("alpha\n")
    assert await run() == "alpha\n"
    assert await run() == "alpha\n"
    assert log.read_text().count("ran") == 1
    data.write_text("beta, longer\n")
    assert await run() == "beta, longer\n"
    assert log.read_text().count("ran") == 2


async def test_event_log_and_visualize_show_hits(tmp_path):
    for i in range(2):
        flow = await _engine(tmp_path, cache=True)
        load, total = _define(flow)
        t = total(load(5))
        with record_events(flow, tmp_path / f"run{i}.jsonl"):
            assert await t == 10
        drawing = flow.visualize()
        await flow.shutdown()
    tasks = load_tasks(tmp_path / "run1.jsonl")
    assert [t.cached for t in tasks.values()] == [True, True]
    assert {t.backend for t in tasks.values()} == {"@cache"}
    assert not any(t.cached for t in load_tasks(tmp_path / "run0.jsonl").values())
    assert "served from the cache" in drawing.source


async def test_lazy_engine(tmp_path):
    for _ in range(2):
        flow = await _engine(tmp_path, cache=True, execution="lazy")
        load, total = _define(flow)
        assert await total(load(4)) == 6
        await flow.shutdown()
    assert CALLS == {"load": 1, "total": 1}


def test_script_compute(tmp_path):
    @afg.function_task(cache=True)
    def square(x):
        CALLS["square"] += 1
        return x * x

    for _ in range(2):
        assert afg.compute(square(3), square(4), cache=tmp_path / "script-cache") == (9, 16)
    assert CALLS["square"] == 2


async def test_bad_cache_options_fail_at_once(tmp_path):
    flow = await _engine(tmp_path)
    with pytest.raises(ConfigurationError, match="cannot be cached.*tasks inside"):

        @flow.block(cache=True)
        async def body():
            return 1

    with pytest.raises(ConfigurationError, match="'verbos', which is not a parameter"):

        @flow.function_task(cache=True, cache_ignore=("verbos",))
        def f(x, verbose=False):
            return x

    with pytest.raises(TypeError, match="cache= must be True, False or None"):
        flow.function_task(cache="yes")
    with pytest.raises(ConfigurationError, match="cache= takes True"):
        await WorkflowEngine.create(backend=LocalExecutionBackend(), cache=3.5)
    await flow.shutdown()
    off = await _engine(tmp_path, cache=False)
    with pytest.raises(ConfigurationError, match="cache=False"):
        off.cache.stats()
    await off.shutdown()


async def test_a_retried_task_is_stored_once_it_succeeds(tmp_path):
    for _ in range(2):
        flow = await _engine(tmp_path)

        @flow.function_task(cache=True, retries=2)
        def flaky(x):
            CALLS["flaky"] += 1
            if CALLS["flaky"] == 1:
                raise RuntimeError("first attempt fails")
            return x + 1

        assert await flaky(1) == 2
        await flow.shutdown()
    assert CALLS["flaky"] == 2  # one failure, one success, then the cache


async def test_a_failed_task_is_not_stored(tmp_path):
    for _ in range(2):
        flow = await _engine(tmp_path)

        @flow.function_task(cache=True)
        def broken(x):
            CALLS["broken"] += 1
            raise ValueError("no")

        @flow.function_task(cache=True)
        def after(x):
            CALLS["after"] += 1
            return x

        b = broken(1)
        with pytest.raises(afg.DependencyFailureError):
            await after(b)
        with pytest.raises(ValueError, match="no"):
            await b
        await flow.shutdown()
        assert flow.cache.stats().misses == 0
    assert CALLS == {"broken": 2}

"""Reporter.ended(): outcomes reported together dispatch their dependents together."""

from __future__ import annotations

import asyncio
import gc

import pytest

from asyncflow_graph import WorkflowEngine
from asyncflow_graph._gc import BURST, gc_paused
from asyncflow_graph.backends import Backend
from asyncflow_graph.errors import DependencyFailureError
from asyncflow_graph.executor.events import RunObserver

T = 5


class BatchBackend(Backend):
    """Holds submissions; ``release()`` reports every held key in one ended() call
    (keys whose name starts with "bad" fail). Records the size of each submit."""

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self.held: list = []
        self.submits: list[int] = []
        self.arrived = asyncio.Event()

    def submit(self, works):
        self.held.extend(works)
        self.submits.append(len(works))
        self.arrived.set()

    def release(self):
        works, self.held = self.held, []
        self.arrived.clear()
        self.context.reporter.ended(
            (n.key, False, ValueError(n.name)) if n.name.startswith("bad") else (n.key, True, 1)
            for w in works
            for n in w.nodes
        )


class Order(RunObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_submitted(self, backend, units):
        self.events.extend(("submitted", k) for u in units for k in u.keys)

    def on_done(self, key, value):
        self.events.append(("done", key))

    def on_failed(self, key, exc):
        self.events.append(("failed", key))


@pytest.fixture
async def engine(tmp_path):
    backend = BatchBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    yield flow, backend
    await flow.shutdown()


async def test_dependents_of_a_batch_go_out_in_one_submission(engine):
    flow, backend = engine

    @flow.function_task
    def src():
        return 1

    @flow.function_task
    def use(x, y):
        return x

    order = Order()
    flow.add_observer(order)
    roots = [src() for _ in range(50)]
    # two inputs each, every root feeding two leaves: nothing fuses into a chain
    leaves = [use(r, roots[i - 1]) for i, r in enumerate(roots)]
    await asyncio.wait_for(backend.arrived.wait(), T)
    assert backend.submits == [50]
    backend.release()  # 50 outcomes in one call
    await asyncio.wait_for(backend.arrived.wait(), T)
    assert backend.submits == [50, 50], "the 50 dependents left in one submit"
    # every root's end was seen before any dependent was submitted
    first_leaf = order.events.index(("submitted", leaves[0].key))
    assert {k for e, k in order.events[:first_leaf] if e == "done"} == {r.key for r in roots}
    backend.release()
    assert await asyncio.wait_for(asyncio.gather(*leaves), T) == [1] * 50


async def test_failures_in_a_batch_end_only_their_dependents(engine):
    flow, backend = engine

    @flow.function_task
    def good():
        return 1

    @flow.function_task
    def bad():
        return 1

    @flow.function_task
    def use(x, y):
        return x

    a, b, c = good(), bad(), good()
    ub, uc = use(b, a), use(c, a)  # two inputs each: nothing fuses
    await asyncio.wait_for(backend.arrived.wait(), T)
    backend.release()  # a and c done, b failed: one batch
    with pytest.raises(ValueError, match="bad"):
        await b
    with pytest.raises(DependencyFailureError):
        await ub
    await asyncio.wait_for(backend.arrived.wait(), T)
    assert backend.submits == [3, 1], "only the dependent of the good inputs went out"
    backend.release()
    assert await asyncio.wait_for(uc, T) == 1


async def test_cancelled_while_held_is_not_dispatched(engine):
    flow, backend = engine

    @flow.function_task
    def src():
        return 1

    @flow.function_task
    def use(x):
        return x

    class CancelOnDone(RunObserver):
        """Cancels a dependent when its input ends: after the batch is recorded,
        while the dependents it made ready are held."""

        def on_done(self, key, value):
            if key == root.key:
                assert leaf.cancel() is True

    root = src()
    leaf, other = use(root), use(root)  # two dependents: nothing is fused
    flow.add_observer(CancelOnDone())
    await asyncio.wait_for(backend.arrived.wait(), T)
    backend.release()
    with pytest.raises(asyncio.CancelledError):
        await leaf
    assert backend.submits == [1, 1], "only the other dependent was submitted"
    assert [w.key for w in backend.held] == [other.key]
    backend.release()
    assert await other == 1


def test_gc_paused_restores_the_state():
    assert gc.isenabled()
    with gc_paused(BURST + 1):
        assert not gc.isenabled()
    assert gc.isenabled()
    with gc_paused(BURST):  # small bursts are not worth it
        assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused(BURST + 1):
            pass
        assert not gc.isenabled(), "a GC the user disabled stays disabled"
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gc_paused(BURST + 1):
        raise RuntimeError
    assert gc.isenabled()


# ---------------------------------------------------------------- on_done_many


class Batches(RunObserver):
    """Records each on_done_many batch and each failure, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_done_many(self, done):
        self.events.append(("done", [k for k, _ in done]))

    def on_failed(self, key, exc):
        self.events.append(("failed", key))


async def test_done_keys_come_as_one_batch_and_in_order_around_failures(engine):
    flow, backend = engine

    @flow.function_task
    def good():
        return 1

    @flow.function_task
    def bad():
        return 1

    seen = Batches()
    flow.add_observer(seen)
    a, b, c = good(), bad(), good()
    await asyncio.wait_for(backend.arrived.wait(), T)
    backend.release()  # a done, b failed, c done: one report
    assert await a == 1 and await c == 1
    assert seen.events == [("done", [a.key]), ("failed", b.key), ("done", [c.key])]
    assert flow._executor.observers.batch is None


async def test_an_observer_overriding_only_on_done_many_hears_single_reports_too(tmp_path):
    from asyncflow_graph import LocalExecutionBackend

    def plain(x):  # a plain function: the thread pool reports it with done()
        return x

    async with await WorkflowEngine.create(
        backend=LocalExecutionBackend(), work_dir=tmp_path
    ) as flow:
        seen = Batches()
        flow.add_observer(seen)
        h = flow.function_task(plain)(7)
        assert await h == 7
        assert ("done", [h.key]) in seen.events


async def test_a_raising_on_done_loses_only_its_own_key(engine, caplog):
    flow, backend = engine

    @flow.function_task
    def src():
        return 1

    class Picky(RunObserver):
        def __init__(self) -> None:
            self.keys: list[str] = []

        def on_done(self, key, value):
            if key == first.key:
                raise RuntimeError("observer bug")
            self.keys.append(key)

    picky = Picky()
    flow.add_observer(picky)
    first, second, third = src(), src(), src()
    await asyncio.wait_for(backend.arrived.wait(), T)
    backend.release()
    assert await asyncio.gather(first, second, third) == [1, 1, 1]
    assert picky.keys == [second.key, third.key]
    assert "observer bug" in caplog.text or "on_done" in caplog.text


async def test_a_report_that_raises_leaves_no_batch_open(engine):
    flow, backend = engine

    @flow.function_task
    def src():
        return 1

    flow.add_observer(Batches())
    h = src()
    await asyncio.wait_for(backend.arrived.wait(), T)

    def broken():
        yield (h.key, True, 1)
        raise RuntimeError("the backend's report broke")

    with pytest.raises(RuntimeError, match="report broke"):
        flow._executor.ended(broken())
    assert flow._executor.observers.batch is None and flow._executor._held is None
    assert await h == 1

"""Long runs hold flat memory: a value is released once no live handle and no
pending dependent needs it, a key nobody can ask about is forgotten, and a
reported failure keeps no frame's locals alive. Handles still held keep working."""

from __future__ import annotations

import asyncio
import gc
import weakref

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

T = 5


class Blob:
    """A value whose life a test can watch (weakly)."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag


async def collected(ref: weakref.ref, turns: int = 20) -> bool:
    """Whether ``ref``'s object is gone once the loop handled the dropped handles."""
    for _ in range(turns):
        gc.collect()
        if ref() is None:
            return True
        await asyncio.sleep(0)
    return ref() is None


async def test_a_value_whose_handle_is_dropped_is_released(flow):
    refs = []

    @flow.function_task
    async def make():
        blob = Blob()
        refs.append(weakref.ref(blob))
        return blob

    h = make()
    assert isinstance(await h, Blob)
    del h
    assert await collected(refs[0])


async def test_a_value_stays_while_a_dependent_still_needs_it(flow):
    refs = []
    gate = asyncio.Event()

    @flow.function_task
    async def make():
        blob = Blob("kept")
        refs.append(weakref.ref(blob))
        return blob

    @flow.function_task
    async def use(blob):
        await gate.wait()
        return blob.tag

    a = make()
    await a
    b = use(a)
    del a  # b has not run yet: it still needs the value
    assert not await collected(refs[0], turns=5)
    gate.set()
    assert await asyncio.wait_for(b, T) == "kept"
    del b
    assert await collected(refs[0])


async def test_a_dependent_created_from_a_held_handle_gets_the_value(flow):
    @flow.function_task
    async def make():
        return Blob("first")

    @flow.function_task
    async def tag(blob):
        return blob.tag

    a = make()
    await asyncio.wait_for(tag(a), T)  # a's only dependent ended; a itself is held
    gc.collect()
    await asyncio.sleep(0)
    assert await asyncio.wait_for(tag(a), T) == "first"


async def test_a_held_handle_keeps_its_description_graph_drawing_and_duration(flow):
    refs = []

    @flow.function_task
    async def make(i):
        blob = Blob(str(i))
        refs.append(weakref.ref(blob))
        return blob

    @flow.function_task
    async def step(blob):
        return Blob(blob.tag + "+")

    last = step(step(make(0)))
    assert (await last).tag == "0++"
    # the values before it are released (nobody can ask for them) ...
    assert await collected(refs[0])
    # ... their nodes stay, for the handle that is still held
    assert [d["name"] for d in last.task["metadata"]["dependencies"]] == ["step"]
    assert len(last.graph) == 3
    assert last.visualize().source
    assert last.key in flow.run_view.durations
    assert last.state == "DONE"


async def test_a_run_that_keeps_no_handle_keeps_nothing(flow):
    @flow.function_task
    async def noop(i):
        return i

    @flow.function_task
    def plain(i):
        return i

    handles = [noop(i) for i in range(200)] + [plain(i) for i in range(50)]
    await asyncio.wait_for(asyncio.gather(*handles), T)
    assert len(flow.graph) == 250
    del handles
    for _ in range(5):
        gc.collect()
        await asyncio.sleep(0)
    assert len(flow.graph) == 0
    assert len(flow.run_view.durations) == 0
    assert len(flow.components) == 0


async def test_values_are_released_after_shutdown_too(tmp_path):
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)
    refs = []

    @flow.function_task
    async def make():
        blob = Blob()
        refs.append(weakref.ref(blob))
        return blob

    h = make()
    await h
    await flow.shutdown()
    del h
    assert await collected(refs[0])
    assert len(flow.graph) == 0


async def test_a_reported_failure_keeps_no_frame_locals(flow):
    refs = []

    @flow.function_task
    def fails():
        big = Blob("local")
        refs.append(weakref.ref(big))
        raise ValueError("with a local")

    @flow.function_task
    async def fails_async():
        big = Blob("local")
        refs.append(weakref.ref(big))
        raise ValueError("with a local")

    h1, h2 = fails(), fails_async()
    out = await asyncio.wait_for(asyncio.gather(h1, h2, return_exceptions=True), T)
    assert all(isinstance(o, ValueError) for o in out)
    assert out[0].__traceback__ is not None  # still printable
    del out
    for r in refs:
        assert await collected(r), "a frame of the failed task kept its locals"
    assert isinstance(h1.exception(), ValueError)  # the handles are held, their errors too


CALLS: list[int] = []  # a global, not a closure cell: a pure task's token covers its cells


async def test_a_pure_call_again_after_its_value_was_released_runs_again(flow):
    CALLS.clear()

    @flow.function_task(pure=True)
    async def double(x):
        CALLS.append(x)
        return x * 2

    @flow.function_task
    async def plus_one(x):
        return x + 1

    assert await plus_one(double(3)) == 7  # double(3)'s handle is dropped at once
    for _ in range(3):  # the loop acts on dropped handles in its next turn
        gc.collect()
        await asyncio.sleep(0)
    again = double(3)
    assert await asyncio.wait_for(again, T) == 6
    same = double(3)
    assert same is again
    assert CALLS == [3, 3]


async def test_a_pure_call_whose_value_is_released_but_node_kept_runs_again(flow):
    CALLS.clear()

    @flow.function_task(pure=True)
    async def double(x):
        CALLS.append(x)
        return x * 2

    @flow.function_task
    async def plus_one(x):
        return x + 1

    held = plus_one(double(3))  # held: double(3)'s node stays for its description
    assert await held == 7
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)
    again = double(3)  # its value is gone: it runs again, under a key of its own
    assert await asyncio.wait_for(again, T) == 6
    assert double(3) is again
    assert CALLS == [3, 3]

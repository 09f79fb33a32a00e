"""Composite workflows: blocks of workflows, concurrent blocks and dependent blocks.

A block runs three small workflows (task1, task2 -> task3) one after another. Three blocks
run concurrently, so the elapsed time is well below the sequential estimate. Finally block C
is created with blocks A and B as dependencies and only starts after both have finished.
"""

import asyncio
import time

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

SLEEP = 0.1
WORKFLOWS_PER_BLOCK = 3
N_BLOCKS = 3


async def main() -> None:
    backend = await LocalExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)

    @flow.function_task
    async def task1(wf):
        await asyncio.sleep(SLEEP)
        return f"t1[{wf}]"

    @flow.function_task
    async def task2(wf):
        await asyncio.sleep(SLEEP)
        return f"t2[{wf}]"

    @flow.function_task
    async def task3(a, b):
        await asyncio.sleep(SLEEP)
        return f"t3({a},{b})"

    @flow.block
    async def block1(name):
        results = []
        for i in range(WORKFLOWS_PER_BLOCK):
            wf = f"{name}.{i}"
            t1 = task1(wf)
            t2 = task2(wf)
            results.append(await task3(t1, t2))
        return results

    # 1. One block, three workflows in sequence.
    single = await block1("solo")
    for value in single:
        print(f"block solo: {value}")

    # 2. Three blocks at once.
    start = time.perf_counter()
    outputs = await asyncio.gather(*(block1(f"b{i}") for i in range(N_BLOCKS)))
    elapsed = time.perf_counter() - start
    # Each workflow is two waves of tasks (task1 || task2, then task3).
    sequential = N_BLOCKS * WORKFLOWS_PER_BLOCK * 2 * SLEEP
    for i, out in enumerate(outputs):
        print(f"block b{i}: {len(out)} workflows, last={out[-1]}")
    print(f"concurrent blocks: {len(outputs)}")
    print(f"elapsed: {elapsed:.2f}s (sequential estimate {sequential:.2f}s)")

    # 3. Blocks with dependencies: C waits for A and B.
    order = []

    @flow.block
    async def create_block(name, *deps):
        order.append(f"start {name}")
        t1 = task1(name)
        t2 = task2(name)
        value = await task3(t1, t2)
        order.append(f"end {name}")
        return f"{name}:{value}"

    block_a = create_block("A")
    block_b = create_block("B")
    block_c = create_block("C", block_a, block_b)
    result_c = await block_c
    print(f"result C: {result_c}")
    print(f"order: {', '.join(order)}")

    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

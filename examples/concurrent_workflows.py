"""Five independent workflows ``task3(task1(), task2())`` run concurrently."""

import asyncio
import time

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

N_WORKFLOWS = 5
SLEEP = 0.1


async def main() -> None:
    backend = await LocalExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)

    @flow.function_task
    async def task1(wf):
        await asyncio.sleep(SLEEP)
        return wf * 10

    @flow.function_task
    async def task2(wf):
        await asyncio.sleep(SLEEP)
        return wf * 100

    @flow.function_task
    async def task3(a, b):
        return a + b

    async def run_workflow(wf):
        t3 = task3(task1(wf), task2(wf))
        value = await t3
        print(f"workflow {wf}: {value}")
        return value

    start = time.perf_counter()
    results = await asyncio.gather(*(run_workflow(i) for i in range(N_WORKFLOWS)))
    elapsed = time.perf_counter() - start
    print(f"results: {results}")
    print(f"total: {sum(results)}")
    print(f"elapsed: {elapsed:.2f}s")

    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

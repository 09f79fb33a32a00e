"""Asynchronous workflows: many independent pipelines at once, with asyncio.gather,
asyncio.as_completed and asyncio.wait (handles are asyncio futures)."""

import asyncio
import time

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.2)
        return i

    @flow.function_task
    async def transform(x: int) -> int:
        await asyncio.sleep(0.2)
        return x * 10

    def pipeline(i: int):  # a plain function that wires tasks and returns the last handle
        return transform(fetch(i))

    start = time.perf_counter()
    results = await asyncio.gather(*(pipeline(i) for i in range(5)))
    elapsed = time.perf_counter() - start
    print("gather:", results, "| concurrent:", elapsed < 1.0)  # 2 s one after another

    firsts = [pipeline(i) for i in range(3)]
    for fut in asyncio.as_completed(firsts):
        print("finished one:", await fut in {0, 10, 20})

    slow = fetch(99)
    done, pending = await asyncio.wait([slow, pipeline(5)], return_when=asyncio.ALL_COMPLETED)
    print("wait:", len(done), "done,", len(pending), "pending")
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

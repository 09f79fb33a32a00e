"""Getting started, step 2: the same workflow with the async (AsyncFlow) face.

Calls return asyncio futures at once; the engine runs each task as soon as its
inputs are ready, and `await` gives the value.
"""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    def load(name: str) -> list[int]:  # a plain function runs in the thread pool
        return [len(name), 10 * len(name)]

    @flow.function_task
    async def total(values: list[int]) -> int:  # an async one runs on the loop
        return sum(values)

    @flow.function_task
    async def report(a: int, b: int) -> str:
        return f"{a} + {b} = {a + b}"

    final = report(total(load("alpha")), total(load("beta")))
    print(final)  # a handle: an asyncio.Future with a key and a state
    print("result:", await final)
    print("state:", final.state)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

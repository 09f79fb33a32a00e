"""Blocks: an async function that runs on the engine's own loop once its inputs are
ready; the tasks its body creates join the graph while it runs."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def step(x: int) -> int:
        return x + 1

    @flow.block
    async def pipeline(start: int) -> list[int]:
        seen = [start]
        while seen[-1] < start + 3:  # ordinary control flow decides what to run next
            seen.append(await step(seen[-1]))
        return seen

    run = pipeline(10)
    print("block value:", await run)
    print("uid:", run.block["uid"], "| state:", run.state)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

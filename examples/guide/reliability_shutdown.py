"""Shutdown: cancel what is left (AsyncFlow's behaviour), or wait for it."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def work(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    pending = flow.function_task(work)(10)
    await flow.shutdown()  # cancels unfinished tasks, closes every backend
    print("shutdown():", pending.state)
    await flow.shutdown()  # safe to call again (or concurrently)

    # `async with` shuts the engine down on exit; wait=True lets open work finish first.
    async with await WorkflowEngine.create(backend=LocalExecutionBackend()) as flow2:
        task = flow2.function_task(work)(0.1)
        await flow2.shutdown(wait=True)
        print("shutdown(wait=True):", task.state, task.result())


if __name__ == "__main__":
    asyncio.run(main())

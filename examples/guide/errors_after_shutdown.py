"""Mistake: creating tasks on an engine that has been shut down."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), uid="session-1")

    @flow.function_task
    def step() -> str:
        return "done"

    await flow.shutdown()
    try:
        step()
    except RuntimeError as exc:
        print(f"{type(exc).__name__}: {exc}")

    async with await WorkflowEngine.create(backend=LocalExecutionBackend()) as flow:  # the fix
        print("fixed:", await flow.function_task(step.func)())


if __name__ == "__main__":
    asyncio.run(main())

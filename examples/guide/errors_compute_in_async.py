"""Mistake: calling the script face's compute() from async code."""

import asyncio

import asyncflow_graph as ag
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


def double(x: int) -> int:
    return 2 * x


async def main() -> None:
    try:
        ag.compute(ag.function_task(double)(21))  # would block the running loop
    except RuntimeError as exc:
        print(f"{type(exc).__name__}: {exc}")

    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())  # the fix
    print("fixed:", await flow.function_task(double)(21))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

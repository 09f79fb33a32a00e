"""Function tasks: plain and async functions, futures as arguments at any depth,
per-call options, and AsyncFlow's description dict."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    def square(x: int) -> int:  # a plain function: runs in the backend's thread pool
        return x * x

    @flow.function_task
    async def add(values: list[int], offset: int = 0) -> int:  # a coroutine: runs on the loop
        return sum(values) + offset

    squares = [square(i) for i in range(4)]  # four handles, running already
    total = add(squares, offset=square(10))  # handles in a list and in a keyword
    print("total:", await total)

    desc = total.task  # AsyncFlow's description of the task
    print("uid:", desc["uid"], "| name:", desc["name"])
    print("depends on:", [d["name"] for d in desc["metadata"]["dependencies"]])
    print("args:", desc["args"], "| kwargs:", desc["kwargs"])

    # task_description= is stripped from the call and merged into the task's options.
    quick = square(7, task_description={"timeout": 5})
    print("square(7):", await quick, "| description:", quick.task["task_backend_specific_kwargs"])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

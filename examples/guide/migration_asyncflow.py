"""An AsyncFlow 0.6 program, unchanged except for its import line."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine  # was: radical.asyncflow


async def main() -> None:
    backend = await LocalExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)

    @flow.function_task
    async def task1(*args):
        return 1

    @flow.function_task
    async def task2(*args):
        return sum(args) + 1

    @flow.executable_task
    async def task3(*args):
        return f"echo {sum(args)}"

    t1 = task1()
    t2 = task2(t1)
    t3 = task3(t1, t2)
    print("task3:", (await t3).strip(), "| states:", t1.state, t2.state, t3.state)
    print("ids:", t1.id, t2.id, t3.id, "| uid:", t3.task["uid"])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Eager (AsyncFlow's default) versus lazy (Dask's) execution."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def run(execution: str) -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), execution=execution)
    ran: list[str] = []

    @flow.function_task
    async def step(name: str, *inputs: str) -> str:
        ran.append(name)
        return name

    a = step("a")
    b = step("b", a)
    step("unused", a)  # nobody awaits this one
    await asyncio.sleep(0.1)
    print(f"{execution}: before await ran {sorted(ran)}")
    await b
    await asyncio.sleep(0.1)
    print(f"{execution}: after await b ran {sorted(ran)}")
    await flow.shutdown()


async def main() -> None:
    await run("eager")  # everything created runs, at the end of the loop turn
    await run("lazy")  # only what is awaited runs, with exactly its ancestors


if __name__ == "__main__":
    asyncio.run(main())

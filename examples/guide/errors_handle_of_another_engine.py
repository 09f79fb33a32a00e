"""Mistake: passing a handle made by one engine to a task of another engine."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    first = await WorkflowEngine.create(backend=LocalExecutionBackend(), uid="first")
    second = await WorkflowEngine.create(backend=LocalExecutionBackend(), uid="second")

    @first.function_task
    def load() -> int:
        return 41

    @second.function_task
    def inc(x: int) -> int:
        return x + 1

    value = load()  # a handle of the engine "first"
    try:
        inc(value)
    except ValueError as exc:
        print(f"{type(exc).__name__}: {exc}")

    print("fixed:", await inc(await value))  # the fix: pass its value
    await first.shutdown()
    await second.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""What behaves differently from radical.asyncflow 0.6 (each line says what
AsyncFlow does instead)."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    def plain(x: int) -> int:  # AsyncFlow: TypeError, tasks must be async
        return x + 1

    @flow.function_task
    async def total(items: dict[str, list[int]]) -> int:
        return sum(sum(v) for v in items.values())

    @flow.executable_task
    async def show(n: int) -> str:  # AsyncFlow: runs at call time, n is a pending future
        return f"echo 'n is   {n}'"  # AsyncFlow: quoting lost, prints "n is 2"

    @flow.function_task(backend="gpu")  # AsyncFlow: every task cancelled, engine dead
    async def misrouted() -> int:
        return 0

    one = plain(1)
    print("sync function:", await one)
    nested = total({"a": [one, plain(2)], "b": [10]})  # AsyncFlow: futures in containers
    print("nested futures:", await nested)  # are not dependencies and stay futures
    print("builder value:", (await show(one)).strip())
    try:
        await misrouted()
    except KeyError as exc:
        print("unknown backend:", type(exc).__name__, "is a KeyError:", isinstance(exc, KeyError))
    print("engine still works:", await plain(41))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

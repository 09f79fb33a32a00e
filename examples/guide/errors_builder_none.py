"""Mistake: an executable task that prints its command instead of returning it."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.executable_task
    def greet(name: str) -> None:
        print(f"echo hello {name}")  # printed, not returned: the builder returns None

    try:
        await greet("world")
    except ValueError as exc:
        print(f"{type(exc).__name__}: {exc}")

    @flow.executable_task
    def greet_fixed(name: str) -> list[str]:
        return ["echo", "hello", name]  # the fix: return a string or an argv list

    print("fixed:", (await greet_fixed("world")).strip())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

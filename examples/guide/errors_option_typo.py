"""Mistake: a misspelt decorator option."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    try:

        @flow.function_task(retires=3)
        def fetch() -> str:
            return "data"

    except TypeError as exc:  # raised when decorating, before anything runs
        print(f"{type(exc).__name__}: {exc}")

    @flow.function_task(retries=3)  # the fix
    def fetch() -> str:
        return "data"

    print("fixed:", await fetch())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Mistake: a generator function (one that uses ``yield``) as a task."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    async with await WorkflowEngine.create(backend=LocalExecutionBackend()) as flow:

        def squares(n: int):
            for i in range(n):
                yield i * i

        try:
            flow.function_task(squares)
        except TypeError as exc:
            print(f"{type(exc).__name__}: {exc}")

        @flow.function_task  # the fix: return the values
        def squares_list(n: int) -> list[int]:
            return [i * i for i in range(n)]

        print("fixed:", await squares_list(4))


if __name__ == "__main__":
    asyncio.run(main())

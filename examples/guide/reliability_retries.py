"""Retries and timeouts, on the decorator or per call."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError, TaskTimeoutError


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    attempts = {"fetch": 0}

    @flow.function_task(retries=3, retry_delay=0.01)  # retry after 0.01 s, 0.02 s, 0.04 s
    async def fetch(url: str) -> str:
        attempts["fetch"] += 1
        if attempts["fetch"] < 3:
            raise ConnectionError(f"{url} is busy")
        return f"page of {url}"

    @flow.function_task(timeout=0.2)
    async def slow() -> str:
        await asyncio.sleep(10)  # an async task is really stopped at the timeout
        return "never"

    @flow.function_task
    async def use(value: str) -> str:
        return value.upper()

    print("fetch:", await fetch("example.org"), "after", attempts["fetch"], "attempts")

    late = slow()
    after = use(late)
    try:
        await late
    except TaskTimeoutError as exc:  # also a built-in TimeoutError
        print("slow:", type(exc).__name__, "-", exc)
    try:
        await after
    except DependencyFailureError as exc:
        print("use:", exc.failed_dependencies, type(exc.root_cause).__name__)

    # The same options per call, through task_description=:
    quick = slow(task_description={"timeout": 0.1})
    (outcome,) = await asyncio.gather(quick, return_exceptions=True)
    print("per call:", repr(outcome))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

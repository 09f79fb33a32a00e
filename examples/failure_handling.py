"""Failure handling: a failing task and the DependencyFailureError of its dependents."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import DependencyFailureError


async def main() -> None:
    backend = await LocalExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)
    executed = []

    @flow.function_task
    async def fetch():
        return 21

    @flow.function_task
    async def explode():
        raise ValueError("sensor offline")

    @flow.function_task
    async def combine(a, b):
        executed.append("combine")
        return a + b

    @flow.function_task
    async def report(value):
        executed.append("report")
        return f"report: {value}"

    good = fetch()
    bad = explode()
    combined = combine(good, bad)
    final = report(combined)

    print(f"fetch result: {await good}")

    try:
        await bad
    except ValueError as exc:
        print(f"task failed: {type(exc).__name__}: {exc}")
    print(f"failed state: {bad.state}")

    try:
        await combined
    except DependencyFailureError as exc:
        print(f"dependent error: {type(exc).__name__}")
        print(f"failed_dependencies: {exc.failed_dependencies}")
        print(f"root_cause: {type(exc.root_cause).__name__}: {exc.root_cause}")
        print(f"cause is root_cause: {exc.__cause__ is exc.root_cause}")

    try:
        await final
    except DependencyFailureError as exc:
        print(f"descendant failed_dependencies: {exc.failed_dependencies}")
        print(f"descendant root_cause: {type(exc.root_cause).__name__}")

    print(f"dependents executed: {executed}")

    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

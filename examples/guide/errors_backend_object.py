"""Mistake: routing with the backend object instead of its name."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import ConfigurationError


async def main() -> None:
    gpu = LocalExecutionBackend(name="gpu")
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="cpu"), gpu])
    try:

        @flow.function_task(backend=gpu)
        def train() -> str:
            return "model"

    except ConfigurationError as exc:
        print(f"{type(exc).__name__}: {exc}")

    @flow.function_task(backend="gpu")  # the fix: the backend's name
    def train() -> str:
        return "model"

    print("fixed:", await train())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

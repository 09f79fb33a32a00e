"""Mistake: two backends without names (both are called "default")."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import ConfigurationError


async def main() -> None:
    try:
        await WorkflowEngine.create(backend=[LocalExecutionBackend(), NoopExecutionBackend()])
    except ConfigurationError as exc:
        print(f"{type(exc).__name__}: {exc}")

    flow = await WorkflowEngine.create(  # the fix: one name per backend
        backend=[LocalExecutionBackend(name="cpu"), NoopExecutionBackend(name="ai")]
    )
    print("fixed:", list(flow.backends))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

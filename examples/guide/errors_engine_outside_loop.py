"""Mistake: creating the engine outside async code."""

import asyncio

from asyncflow_graph import NoopExecutionBackend, WorkflowEngine

try:
    flow = WorkflowEngine(backend=NoopExecutionBackend())  # module level: no event loop
except RuntimeError as exc:
    print(f"{type(exc).__name__}: {exc}")


async def main() -> None:  # the fix: create it inside a coroutine, with await
    flow = await WorkflowEngine.create(backend=NoopExecutionBackend())
    print("fixed:", flow.backend.name)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

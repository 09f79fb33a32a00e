"""Mistake: routing to a backend name that is not registered (here a typo)."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="cpu"), LocalExecutionBackend(name="gpu")]
    )

    @flow.function_task(backend="gpus")
    def train() -> str:
        return "model"

    try:
        await train()  # fails this task (and its dependents) only
    except KeyError as exc:
        print(f"{type(exc).__name__}: {exc}")

    @flow.function_task(backend="gpu")  # the fix: a registered name
    def train_fixed() -> str:
        return "model"

    print("fixed:", await train_fixed())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

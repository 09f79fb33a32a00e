"""Mistake: a prompt task left on the default (compute) backend."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")]
    )

    @flow.prompt_task  # no backend=: goes to "compute", which cannot serve prompts
    async def ask(question: str) -> str:
        return question

    try:
        await ask("What is a task graph?")
    except NotImplementedError as exc:
        print(f"{type(exc).__name__}: {exc}")

    @flow.prompt_task(backend="ai")  # the fix: route it to the AI backend
    async def ask_ai(question: str) -> str:
        return question

    print("fixed:", await ask_ai("What is a task graph?"))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

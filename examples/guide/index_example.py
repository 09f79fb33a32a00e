"""A first taste: a compute + AI pipeline, its plan, and its result."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")]
    )

    @flow.function_task
    def clean(doc: str) -> str:  # plain functions run in the thread pool
        return doc.strip().lower()

    @flow.prompt_task(backend="ai")
    async def summarize(text: str) -> str:  # the builder sees the *resolved* value
        return f"Summarize: {text}"

    @flow.executable_task
    def count(text: str) -> list[str]:  # an argv list never goes through a shell
        return ["printf", "%s", text]

    text = clean("  Hello World  ")
    summary, echoed = summarize(text), count(text)
    print(flow.explain())  # the compiled plan, before anything ran
    print(await summary, "|", await echoed)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

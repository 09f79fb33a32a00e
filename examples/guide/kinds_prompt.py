"""Prompt tasks: the builder returns the prompt text; an AI backend answers it.
NoopExecutionBackend stands in for an inference server: it answers every prompt
with "Dummy Prompt Output" and never runs user code (not even the builder)."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")]
    )

    @flow.function_task
    def clean(text: str) -> str:
        return " ".join(text.split())

    @flow.prompt_task(backend="ai")
    async def summarize(text: str) -> str:
        return f"Summarize in five words: {text}"

    answer = summarize(clean("  Graph   compilers meet   inference servers "))
    print("answer:", await answer)
    print("state:", answer.state, "| backend:", answer.task["target_backend"])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""A compute + AI pipeline: function tasks on a local pool, prompt tasks on an AI
backend. NoopExecutionBackend plays the inference server here (every answer is
"Dummy Prompt Output"); the routing is the same for a real one."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine

DOCS = ["  The quick brown fox ", " jumps over  the lazy dog  "]


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")]
    )

    @flow.function_task
    def clean(doc: str) -> str:
        return " ".join(doc.split()).lower()

    @flow.prompt_task(backend="ai")
    async def summarize(text: str) -> str:
        return f"Summarize: {text}"

    @flow.function_task
    async def collect(summaries: list[str]) -> dict[int, str]:
        return dict(enumerate(summaries))

    report = collect([summarize(clean(d)) for d in DOCS])
    print(flow.explain(report))
    print("report:", await report)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

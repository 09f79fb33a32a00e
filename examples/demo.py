"""The main demo: a mixed compute / LLM pipeline on local backends.

It builds the graph lazily, prints the compiled plan and draws it (graph.svg)
before anything runs, then runs it and prints the results.
"""

from __future__ import annotations

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine

DOCS = ["  The Quick Brown Fox  ", "  Graph Compilers Are Fun ", " HPC meets AI  "]


async def main() -> None:
    compute = LocalExecutionBackend(name="compute")
    ai = NoopExecutionBackend(name="ai")  # stands in for an inference server
    flow = await WorkflowEngine.create(backend=[compute, ai], execution="lazy")
    ran: list[str] = []

    @flow.function_task
    def clean(doc: str) -> str:  # a plain function: runs in the thread pool
        ran.append("clean")
        return " ".join(doc.split()).lower()

    @flow.function_task
    async def tokens(text: str) -> int:  # async: runs on the event loop
        ran.append("tokens")
        return len(text.split())

    @flow.prompt_task(backend="ai")
    async def summarize(text: str, n: int) -> str:
        return f"Summarize in {n} words: {text}"

    @flow.function_task
    async def report(summaries: list[str], counts: list[int]) -> str:
        return f"{len(summaries)} summaries, {sum(counts)} tokens"

    cleaned = [clean(d) for d in DOCS]
    counts = [tokens(c) for c in cleaned]
    summaries = [summarize(c, n) for c, n in zip(cleaned, counts, strict=True)]
    final = report(summaries, counts)  # futures nested in lists are dependencies

    print(flow.explain(final))
    drawing = final.visualize("graph.svg")
    print(f"drew {drawing.filename} before running; tasks run so far: {len(ran)}")

    print("result:", await final)
    print("summaries:", [s.result() for s in summaries])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

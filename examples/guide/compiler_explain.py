"""What the compiler makes of a graph, before anything runs: fused chains,
partitions per backend, and the errors it already knows about."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")],
        execution="lazy",  # build now, run on demand
    )

    @flow.function_task
    def load(i: int) -> str:
        return f"doc {i}"

    @flow.function_task
    def clean(text: str) -> str:
        return text.strip()

    @flow.function_task
    def tokens(text: str) -> int:
        return len(text.split())

    @flow.prompt_task(backend="ai")
    def summarize(text: str, n: int) -> str:
        return f"Summarize {text} in {n} words"

    @flow.function_task(backend="gpu")  # no backend has this name
    def embed(text: str) -> list[float]:
        return [0.0]

    @flow.function_task
    def report(summaries: list[str], vectors: list[list[float]]) -> str:
        return f"{len(summaries)} summaries"

    texts = [clean(load(i)) for i in range(2)]
    final = report([summarize(t, tokens(t)) for t in texts], [embed(t) for t in texts])

    plan = flow.compile(final)  # a Plan; flow.explain(final) is its text
    print(plan.explain())
    for p in plan.partitions:
        print(f"P{p.id}: backend={p.backend} keys={list(p.keys)} after={sorted(p.dependencies)}")
    print("errors:", {key: type(exc).__name__ for key, exc in plan.errors.items()})
    print("tasks run so far:", sum(fut.done() for fut in (final, *texts)))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Drawing a workflow: the graph before a run (clusters per backend), the same
graph after it (coloured by state, with durations), and Mermaid text."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.visualize import to_mermaid


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")],
        execution="lazy",
    )

    @flow.function_task
    def load(name: str) -> str:
        return name.upper()

    @flow.prompt_task(backend="ai")
    def ask(text: str) -> str:
        return f"What is {text}?"

    @flow.function_task
    def merge(answers: list[str]) -> str:
        return " / ".join(answers)

    final = merge([ask(load(n)) for n in ("graph", "plan")])

    graph = flow.graph  # an immutable Graph: a mapping key -> Node
    print("tasks:", len(graph), "| merge depends on:", graph.dependencies(final.key))
    print(to_mermaid(flow.compile(final)), end="")

    before = final.visualize("out/before.svg")  # Graphviz: partitions as clusters
    print("before the run:", before.filename)
    await final
    after = flow.visualize("out/after.svg")  # states (done, failed, cancelled) and durations
    print("after the run:", after.filename, "| DOT has fill colours:", "#b7e4c7" in after.source)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

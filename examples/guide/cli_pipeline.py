"""A pipeline for the command line (docs/cli.md).

`build` takes a lazy engine and returns handles: `asyncflow-graph visualize` and
`asyncflow-graph explain` call it and draw or explain the plan without running anything.
Run as a script, it runs the pipeline with a result cache in out/cache and its event log
in out/run.jsonl, for `asyncflow-graph timeline` and `asyncflow-graph cache`.
"""

import asyncio
from pathlib import Path

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.handle import TaskFuture
from asyncflow_graph.telemetry import record_events


async def build(flow: WorkflowEngine) -> TaskFuture:
    @flow.function_task
    async def simulate(i: int) -> int:
        await asyncio.sleep(0.01)
        return i * i

    @flow.function_task
    async def summarize(results: list[int]) -> int:
        return sum(results)

    return summarize([simulate(i) for i in range(3)])


async def main() -> None:
    Path("out").mkdir(exist_ok=True)  # every example writes under out/
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), cache="out/cache")
    with record_events(flow, "out/run.jsonl"):
        total = await build(flow)
        print("total =", await total)
    await flow.shutdown()
    print("wrote out/run.jsonl")


if __name__ == "__main__":
    asyncio.run(main())

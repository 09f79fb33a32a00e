"""The JSONL event log of a run, read back and drawn as a timeline, with a
progress bar (on a terminal a live rich display; elsewhere one line at the end)."""

import asyncio
from collections import Counter
from pathlib import Path

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import (
    load_tasks,
    plot_timeline,
    read_events,
    record_events,
    show_progress,
)


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="cpu"), NoopExecutionBackend(name="ai")]
    )

    @flow.function_task
    async def simulate(i: int) -> int:
        await asyncio.sleep(0.01 * (i + 1))
        return i

    @flow.prompt_task(backend="ai")
    async def describe(value: int) -> str:
        return f"Describe run {value}"

    Path("out").mkdir(exist_ok=True)  # every example writes under out/
    with record_events(flow, "out/run.jsonl"), show_progress(flow, live=False) as bar:
        await asyncio.gather(*(describe(simulate(i)) for i in range(4)))
    print("progress:", bar.line())

    events = read_events("out/run.jsonl")
    print("events:", dict(Counter(e.event for e in events)))
    task = load_tasks(events)["task.000001"]
    print(task.name, task.backend, task.state, f"ran {task.ended - task.started:.2f} s")
    print("drew", plot_timeline("out/run.jsonl", "out/timeline.png", group_by="backend"))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

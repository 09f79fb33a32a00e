"""Grouping tasks into named workflows: workflow_scope() tags every task created
inside it; a workflow_id= keyword on one call overrides the scope."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def train(config: str) -> str:
        return f"model[{config}]"

    @flow.function_task
    async def score(model: str) -> float:
        return len(model) / 100

    async def experiment(i: int) -> str:
        async with flow.workflow_scope(f"exp-{i}") as wid:  # scopes follow each coroutine
            model = train(f"lr={i}")
            value = await score(model)
            return f"{wid}: {model.task['workflow_id']} {value:.2f}"

    for line in await asyncio.gather(*(experiment(i) for i in range(3))):
        print(line)

    async with flow.workflow_scope() as auto:  # an id is made up when none is given
        tagged = train("auto")
        other = train("side", workflow_id="side-study")
        await asyncio.gather(tagged, other)
    print("auto id:", auto.startswith("wf-"), tagged.task["workflow_id"] == auto)
    print("explicit id:", other.task["workflow_id"])
    outside = train("plain")
    await outside
    print("outside any scope:", outside.task["workflow_id"])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

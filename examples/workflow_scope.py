"""Grouping tasks into a named workflow with ``workflow_scope``.

Every task created inside ``async with flow.workflow_scope("experiment-42")`` is tagged with
that workflow id (visible as ``fut.task["workflow_id"]``); an explicit ``workflow_id=`` on a
single call overrides the scope, and tasks outside any scope carry no workflow id.
"""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    backend = await LocalExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)

    @flow.function_task
    async def load(name):
        return f"data:{name}"

    @flow.function_task
    async def train(data):
        await asyncio.sleep(0.05)
        return f"model({data})"

    @flow.function_task
    async def evaluate(model):
        return f"score({model})"

    async with flow.workflow_scope("experiment-42") as wid:
        print(f"scope: {wid}")
        data = load("mnist")
        model = train(data)
        score = evaluate(model)
        side = evaluate(model, workflow_id="side-study")
        result = await score
        side_result = await side

    for label, fut in (("load", data), ("train", model), ("evaluate", score)):
        print(f"{label} workflow_id: {fut.task['workflow_id']}")
    print(f"override workflow_id: {side.task['workflow_id']}")

    outside = load("cifar")
    await outside
    print(f"outside workflow_id: {outside.task['workflow_id']}")

    async with flow.workflow_scope() as auto_wid:
        auto = load("auto")
        await auto
    print(f"auto scope matches: {auto.task['workflow_id'] == auto_wid}")
    print(f"auto scope prefix: {auto_wid.split('-')[0]}")

    print(f"result: {result}")
    print(f"side result: {side_result}")

    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

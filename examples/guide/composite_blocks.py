"""Blocks as units of a workflow: a block's tasks are its members (tagged with the
block's uid as workflow id), and blocks can depend on other blocks."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    order: list[str] = []

    @flow.function_task
    async def simulate(name: str) -> str:
        await asyncio.sleep(0.05)
        return f"sim({name})"

    @flow.function_task
    async def analyze(data: str) -> str:
        return f"ana({data})"

    members = {}

    @flow.block
    async def campaign(name: str, *after: str) -> str:
        order.append(f"start {name}")
        data = simulate(name)
        members[name] = data
        result = await analyze(data)
        order.append(f"end {name}")
        return result

    a = campaign("A")
    b = campaign("B")
    c = campaign("C", a, b)  # C starts only once A and B have finished
    print("C:", await c)
    started_c = order.index("start C")
    print("C started after A and B ended:", {"end A", "end B"} <= set(order[:started_c]))
    print("A's member:", members["A"].task["workflow_id"], "| A's uid:", a.block["uid"])
    print("C depends on:", [d["uid"] for d in c.block["metadata"]["dependencies"]])
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

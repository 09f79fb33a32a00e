"""Cancellation: cancelling a handle stops its work and cancels every dependent;
cancelling a block cancels the tasks its body created."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def long_step(x: int) -> int:
        await asyncio.sleep(10)
        return x

    @flow.function_task
    async def after(x: int) -> int:
        return x + 1

    first = long_step(1)
    second = after(first)
    await asyncio.sleep(0.05)  # first is running now
    print("cancel:", first.cancel("not needed any more"))
    try:
        await second
    except asyncio.CancelledError as exc:
        print("dependent:", second.state, "-", exc.args[0])
    print("cancel again:", first.cancel())  # it has ended: False

    members = []

    @flow.block
    async def campaign() -> None:
        members.append(long_step(2))
        await members[-1]

    run = campaign()
    await asyncio.sleep(0.05)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    print("block:", run.state, "| member:", members[0].state)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

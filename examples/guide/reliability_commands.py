"""Safe executable tasks: a command string goes through /bin/sh, so text from an
upstream task can inject commands; an argv list (or shell=False) cannot."""

import asyncio

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    def user_input() -> str:
        return "x; echo INJECTED"  # imagine this came from a file or a model

    @flow.executable_task
    def unsafe(name: str) -> str:
        return f"echo looking for {name}"  # the shell runs `echo INJECTED` too

    @flow.executable_task
    def safe(name: str) -> list[str]:
        return ["echo", "looking for", name]  # one literal argument, no shell

    @flow.executable_task(task_description={"shell": False})
    def also_safe(name: str) -> str:
        return f"echo looking for '{name}'"  # shlex-split, then exec'd: no shell

    name = user_input()
    print("unsafe:", (await unsafe(name)).splitlines())
    print("safe:", (await safe(name)).splitlines())
    print("also safe:", (await also_safe(name)).splitlines())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

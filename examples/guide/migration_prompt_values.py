"""Prompt builders see resolved values. With AsyncFlow the builder runs at call time
and the prompt holds "<Future pending ...>"; here it runs once its inputs are done.
The backend is an AsyncFlow-style object that echoes the prompt it receives."""

import asyncio
from typing import Any

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


class EchoAI:
    """An AsyncFlow-style AI backend: answers with the prompt it was sent."""

    name = "ai"

    def register_callback(self, func: Any) -> None:
        self.callback = func

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            task["stdout"] = f"(answer to: {task['prompt']})"
            self.callback(task, "DONE")

    async def shutdown(self) -> None:
        pass


async def main() -> None:
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(), EchoAI()])

    @flow.function_task
    async def read() -> str:
        await asyncio.sleep(0.05)
        return "the quarterly report"

    @flow.prompt_task(backend="ai")
    async def summarize(text: str) -> str:
        return f"Summarize {text}"

    print(await summarize(read()))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

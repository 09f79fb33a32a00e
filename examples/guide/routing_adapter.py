"""Bring an existing AsyncFlow/RHAPSODY-style backend: any object with
submit_tasks(list[dict]) and register_callback(func) is wrapped by an adapter and
gets AsyncFlow's task dicts, with every upstream value already resolved."""

import asyncio
import inspect
from typing import Any

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


class LegacyBackend:
    """A minimal backend written the AsyncFlow way (it knows nothing of this library)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callback: Any = None

    def register_callback(self, func: Any) -> None:
        self._callback = func

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            result = task["function"](*task["args"], **task["kwargs"])
            task["return_value"] = await result if inspect.isawaitable(result) else result
            print(f"legacy backend ran {task['name']}{task['args']} as {task['uid']}")
            self._callback(task, "DONE")

    async def cancel_task(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        print("legacy backend shut down")


async def main() -> None:
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="local"), LegacyBackend(name="legacy")]
    )

    @flow.function_task
    def produce() -> int:
        return 20

    @flow.function_task(backend="legacy")
    def double(x: int) -> int:
        return 2 * x

    print("result:", await double(produce()))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

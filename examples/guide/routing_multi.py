"""Multi-backend routing: name each backend, route tasks with backend=; the first
backend is the default. explain() shows one partition per backend and stage."""

import asyncio
import os
from concurrent.futures import ProcessPoolExecutor

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

LINES = ["3 4 5", "10 20", "7"]


async def main() -> None:
    threads = LocalExecutionBackend(name="io")  # the default: listed first
    processes = LocalExecutionBackend(ProcessPoolExecutor(max_workers=2), name="cpu")
    flow = await WorkflowEngine.create(backend=[threads, processes])
    print("default backend:", flow.backend.name, "| all:", list(flow.backends))

    @flow.function_task  # no backend=: runs on the default, "io"
    def parse(line: str) -> list[int]:
        return [int(x) for x in line.split()]

    @flow.function_task(backend="cpu")  # CPU-bound work goes to the process pool
    def crunch(values: list[int]) -> tuple[int, int]:
        return sum(v**3 for v in values), os.getpid()

    @flow.function_task
    async def summary(results: list[tuple[int, int]]) -> str:
        elsewhere = all(pid != os.getpid() for _, pid in results)
        return f"total={sum(r for r, _ in results)} ran in worker processes: {elsewhere}"

    final = summary([crunch(parse(line)) for line in LINES])
    print(flow.explain(final))
    print(await final)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Thousands of millisecond tasks on Dask: the compiler groups them into fewer Dask tasks
(chunks of independent tasks, fused chains), sized from the durations it measured; every
handle still has its own value and its own error."""

import asyncio
import time

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend


def simulate(i: int) -> int:
    time.sleep(0.001)  # a 1 ms task: Dask alone would spend as long scheduling it
    if i == 7:
        raise ValueError("point 7 diverged")
    return i * i


def total(*xs: int) -> int:
    return sum(xs)


async def main() -> None:
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1, processes=False)
    flow = await WorkflowEngine.create(backend=backend)
    sim = flow.function_task(simulate)
    tot = flow.function_task(total)

    # First sweep: simulate was never measured, so it is spread over the workers.
    first = [sim(i) for i in range(2000)]
    results = await asyncio.gather(*first, return_exceptions=True)
    print("point 7:", repr(results[7]), "point 8:", results[8])

    # Measured now: the next sweep is cut into chunks of about 0.1 s of work.
    sweep = [sim(i) for i in range(8, 2000)]
    summed = tot(*sweep)
    print(flow.explain(summed))
    print("total:", await summed)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""A workflow on a Dask cluster that a batch job started (see docs/dask_hpc.md).

    python examples/dask_hpc/scheduler_file.py /shared/path/scheduler.json

The engine connects through the scheduler file; heavy results stay on the workers and
only what is awaited comes back to this process.
"""

import asyncio
import os
import random
import sys

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend


async def main(scheduler_file: str) -> None:
    dask = DaskExecutionBackend(name="dask", scheduler_file=scheduler_file)
    flow = await WorkflowEngine.create(backend=[dask, LocalExecutionBackend(name="local")])
    try:

        @flow.function_task(backend="dask")
        def simulate(seed: int) -> list[float]:
            rng = random.Random(seed)
            return [rng.gauss(0.0, 1.0) for _ in range(200_000)]  # stays on a worker

        @flow.function_task(backend="dask")
        def mean(samples: list[float]) -> float:
            return sum(samples) / len(samples)  # reads its input where it lies

        @flow.function_task(backend="local")
        def report(means: list[float]) -> str:
            return f"{len(means)} runs, mean of means {sum(means) / len(means):+.4f}"

        runs = [simulate(seed) for seed in range(8)]
        print(await report([mean(r) for r in runs]))  # only 8 floats travel here
        workers = await dask.client.run(os.getpid)  # the backend's asynchronous Client
        print(f"workers: {len(workers)}")
    finally:
        await flow.shutdown()  # closes the backend's client; the cluster keeps running
    print("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ["SCHEDULER_FILE"]))

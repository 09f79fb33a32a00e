"""GPU tasks on workers started with ``dask worker --resources "GPU=1"``.

    python examples/dask_hpc/gpu_resources.py /shared/path/scheduler.json

A task asks for the resource in its task_description; Dask runs it only on a worker that
has one free. retries=1 lets a task survive one failure, a worker death included.
"""

import asyncio
import os
import sys

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend

GPU = {"resources": {"GPU": 1}}


async def main(scheduler_file: str) -> None:
    dask = DaskExecutionBackend(name="dask", scheduler_file=scheduler_file)
    flow = await WorkflowEngine.create(backend=dask)
    try:

        @flow.function_task(backend="dask", retries=1, task_description=GPU)
        def train(fold: int) -> tuple[int, str]:
            from distributed import get_worker

            return fold, str(get_worker().name)  # a real task would use the GPU here

        @flow.function_task(backend="dask")
        def preprocess(fold: int) -> int:  # no resources: any worker
            return fold

        results = await asyncio.gather(*(train(preprocess(i)) for i in range(4)))
        print(f"trained {len(results)} folds on GPU workers {sorted({w for _, w in results})}")
    finally:
        await flow.shutdown()
    print("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ["SCHEDULER_FILE"]))

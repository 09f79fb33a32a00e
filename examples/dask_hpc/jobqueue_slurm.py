"""A dask-jobqueue SLURMCluster: the workers are SLURM jobs that this script submits.

    pip install dask-jobqueue
    python examples/dask_hpc/jobqueue_slurm.py      # on a login node

You own the cluster: the engine uses it and never closes it.
"""

import asyncio
from pathlib import Path

from dask_jobqueue import SLURMCluster

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend


async def main(cluster: SLURMCluster) -> None:
    dask = DaskExecutionBackend(name="dask", cluster=cluster)
    flow = await WorkflowEngine.create(backend=dask, work_dir="/scratch/me/runs")
    try:
        await dask.client.wait_for_workers(4)  # the jobs may wait in the queue first

        @flow.function_task(backend="dask", retries=1)
        def square(x: int) -> int:
            return x * x

        @flow.executable_task(backend="dask", capture_stdio=True)
        def hostname() -> str:
            return "hostname"  # runs on a compute node; its stdout file lands in work_dir

        total = sum(await asyncio.gather(*(square(i) for i in range(1000))))
        print(total, Path(await hostname()).read_text().strip())
    finally:
        await flow.shutdown()  # closes the engine's client, not the cluster


if __name__ == "__main__":
    slurm = SLURMCluster(
        queue="compute",  # sbatch -p
        account="my_project",  # sbatch -A
        cores=32,  # threads per job
        processes=4,  # worker processes per job (8 threads each)
        memory="120GB",  # per job
        walltime="02:00:00",
        local_directory="$TMPDIR",
        job_extra_directives=["--exclusive"],
    )
    with slurm:  # cancels the worker jobs on exit
        slurm.scale(jobs=2)  # two SLURM jobs: 8 worker processes
        asyncio.run(main(slurm))

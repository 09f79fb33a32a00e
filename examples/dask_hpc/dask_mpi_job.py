"""A Dask cluster inside one MPI job, with dask-mpi.

    mpirun -np 4 python examples/dask_hpc/dask_mpi_job.py

Rank 0 runs the scheduler, rank 1 runs this script past initialize(), ranks 2+ are
workers. When the script ends, dask-mpi stops the scheduler and the workers.
"""

import asyncio

from dask_mpi import initialize
from distributed import Client

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend

initialize(nthreads=4, local_directory="/tmp")  # only rank 1 returns from here


async def main() -> None:
    client = await Client(asynchronous=True)  # the address comes from initialize()
    flow = await WorkflowEngine.create(backend=DaskExecutionBackend(name="dask", client=client))
    try:

        @flow.function_task(backend="dask")
        def inc(x: int) -> int:
            return x + 1

        print(await inc(inc(1)))
    finally:
        await flow.shutdown()  # leaves the client open: it is yours
        await client.close()


asyncio.run(main())

"""Who closes what: the three ways to hand a cluster to DaskExecutionBackend.

python examples/dask_hpc/ownership.py
"""

import asyncio

from distributed import Client, LocalCluster

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend


async def run(backend: DaskExecutionBackend) -> int:
    flow = await WorkflowEngine.create(backend=backend)
    try:
        add = flow.function_task(lambda a, b: a + b, backend=backend.name)
        return await add(20, 22)
    finally:
        await flow.shutdown()


async def main() -> None:
    # 1. Nothing given: the backend starts a LocalCluster and closes it at shutdown.
    embedded = DaskExecutionBackend(name="dask", n_workers=2, threads_per_worker=1)
    print("embedded:", await run(embedded), embedded.client.status)

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        # 2. cluster= : the backend opens (and closes) its own client; the cluster stays.
        print("cluster=:", await run(DaskExecutionBackend(name="dask", cluster=cluster)))
        print("cluster still", cluster.status.name)

        # 3. client= : an asynchronous Client on this loop; the backend never closes it.
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            print("client=:", await run(DaskExecutionBackend(name="dask", client=client)))
            print("client still", client.status)
    print("done")


if __name__ == "__main__":
    asyncio.run(main())

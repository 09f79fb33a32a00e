"""A TLS-secured Dask scheduler and a backend that holds its credentials.

Here the scheduler is a LocalCluster with temporary credentials, standing in for a
``dask scheduler --tls-ca-file ... --tls-cert ... --tls-key ...`` of a batch job; with
files, build ``Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...,
require_encryption=True)`` instead. A client with other credentials is refused."""

import asyncio

from distributed import Client, LocalCluster
from distributed.security import Security

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend


async def main() -> None:
    security = Security.temporary()
    async with LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tls",
        security=security,
        dashboard_address=None,
        asynchronous=True,
    ) as cluster:
        backend = DaskExecutionBackend(address=cluster.scheduler_address, security=security)
        flow = await WorkflowEngine.create(backend=backend)

        @flow.function_task
        def square(x: int) -> int:
            return x * x

        print("with the credentials:", await square(7))
        await flow.shutdown()
        stranger = Security.temporary()  # TLS, but credentials of its own
        try:
            await Client(cluster.scheduler_address, security=stranger, timeout=2, asynchronous=True)
        except OSError as exc:
            print("with other credentials: refused", f"({type(exc).__name__})")


if __name__ == "__main__":
    asyncio.run(main())

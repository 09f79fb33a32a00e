"""A mixed workflow: local preprocessing, a simulation sweep on Dask, AI summaries.

* "local"  — a thread pool on this machine (reading and cleaning inputs);
* "dask"   — an embedded Dask LocalCluster (pass --address or --scheduler-file to use a
             running cluster instead, e.g. one started on an HPC machine);
* "ai"     — a no-op stand-in for an inference server (swap in OpenAIInferenceBackend).

The sweep's intermediate results stay on the Dask workers: only the final statistics
come back to this process. Run: ``python examples/mixed_backends.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import math

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import (
    DaskExecutionBackend,
    LocalExecutionBackend,
    NoopExecutionBackend,
)


def dask_backend(args: argparse.Namespace) -> DaskExecutionBackend:
    if args.address:
        return DaskExecutionBackend(name="dask", address=args.address)
    if args.scheduler_file:
        return DaskExecutionBackend(name="dask", scheduler_file=args.scheduler_file)
    return DaskExecutionBackend(name="dask", n_workers=2, threads_per_worker=1, processes=False)


async def main(args: argparse.Namespace) -> None:
    backends = [
        LocalExecutionBackend(name="local"),
        dask_backend(args),
        NoopExecutionBackend(name="ai"),
    ]
    flow = await WorkflowEngine.create(backend=backends)

    @flow.function_task(backend="local")
    def parameters(n: int) -> list[float]:
        return [0.1 * (i + 1) for i in range(n)]

    @flow.function_task(backend="dask", retries=1)
    def simulate(params: list[float], i: int) -> list[float]:
        # stands in for an expensive kernel: a damped oscillation per parameter
        return [math.exp(-p * i) * math.cos(p * i) for p in params]

    @flow.function_task(backend="dask")
    def energy(trace: list[float]) -> float:
        return sum(x * x for x in trace)

    @flow.function_task(backend="dask")
    def statistics(*energies: float) -> dict[str, float]:
        return {"runs": len(energies), "mean": sum(energies) / len(energies), "max": max(energies)}

    @flow.prompt_task(backend="ai")
    def summarize(stats: dict[str, float]) -> str:
        return f"Summarize a sweep of {stats['runs']} runs with mean energy {stats['mean']:.3f}"

    params = parameters(8)
    energies = [energy(simulate(params, i)) for i in range(16)]
    stats = statistics(*energies)
    summary = summarize(stats)

    print(flow.explain())
    result = await stats
    print(f"runs: {result['runs']}")
    print(f"mean energy: {result['mean']:.4f}")
    print(f"summary: {await summary}")
    await flow.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a running Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--scheduler-file", help="scheduler file written by `dask scheduler`")
    asyncio.run(main(parser.parse_args()))

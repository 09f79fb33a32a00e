"""5,000-task map-reduce on one Dask cluster: through asyncflow_graph's Dask backend
vs the same graph given to ``client.compute`` with dask.delayed.

Run: ``python -m benchmarks.dask_mapreduce [--maps 2500] [--repeat 5] [--processes]``.
``--tls`` instead measures what the embedded cluster's default security costs: the
same asyncflow_graph run on a plain-TCP cluster and on a TLS cluster with temporary
credentials (what ``DaskExecutionBackend()`` starts), cluster start-up included.
Both systems share one ``LocalCluster`` (2 workers, 1 thread each) in the same run;
the figure is the median wall time from graph construction to the final result.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable
from time import perf_counter
from typing import Any

from benchmarks.tasks import step
from benchmarks.workloads import map_reduce


async def dask_delayed(client: Any, maps: int) -> tuple[float, int]:
    import dask

    task = dask.delayed(step, pure=False)
    t0 = perf_counter()
    (final,) = map_reduce(lambda _stage, *deps: task(*deps), maps)
    result = await client.compute(final)
    return perf_counter() - t0, result


async def afg(client: Any, maps: int, execution: str, coarsen: bool = True) -> tuple[float, int]:
    from asyncflow_graph import WorkflowEngine
    from asyncflow_graph.backends import DaskExecutionBackend

    flow = await WorkflowEngine.create(
        backend=DaskExecutionBackend(client=client, coarsen=coarsen), execution=execution
    )
    task = flow.function_task(step)
    t0 = perf_counter()
    (final,) = map_reduce(lambda _stage, *deps: task(*deps), maps)
    result = await final
    elapsed = perf_counter() - t0
    await flow.shutdown()
    return elapsed, result


async def main(maps: int, repeat: int, processes: bool) -> None:
    from distributed import Client, LocalCluster

    async with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            asynchronous=True,
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        systems: dict[str, Callable[[], Any]] = {
            "dask.delayed + client.compute": lambda: dask_delayed(client, maps),
            "asyncflow_graph dask (eager)": lambda: afg(client, maps, "eager"),
            "asyncflow_graph dask (lazy)": lambda: afg(client, maps, "lazy"),
        }
        times: dict[str, list[float]] = {name: [] for name in systems}
        for _ in range(repeat):  # interleaved, so drift hits every system alike
            for name, run in systems.items():
                elapsed, result = await run()
                assert result == 2 * maps - 1, (name, result)
                times[name].append(elapsed)
                await client.run(lambda: None)  # settle the workers between runs
        base = statistics.median(times["dask.delayed + client.compute"])
        tasks = 2 * maps - 1
        kind = "processes" if processes else "threads"
        print(
            f"| system ({tasks} tasks, LocalCluster 2x1 {kind}) | median s | min-max s | "
            "tasks/s | x dask |"
        )
        print("|---|---|---|---|---|")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(
                f"| {name} | {med:.3f} | {min(ts):.3f}-{max(ts):.3f} | {tasks / med:,.0f} | "
                f"{med / base:.2f} |"
            )


async def tls_cost(maps: int, repeat: int, processes: bool, coarsen: bool = True) -> None:
    """Median wall time of the eager map-reduce and of starting the cluster, on plain
    TCP vs TLS with temporary credentials (interleaved)."""
    from distributed import Client, LocalCluster
    from distributed.security import Security

    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for label, security in (("tcp, no security", None), ("tls, temporary", True)):
            t0 = perf_counter()
            async with (
                LocalCluster(
                    n_workers=2,
                    threads_per_worker=1,
                    processes=processes,
                    protocol="tls" if security else "tcp",
                    security=Security.temporary() if security else None,
                    dashboard_address=None,
                    asynchronous=True,
                ) as cluster,
                Client(cluster, asynchronous=True) as client,
            ):
                started = perf_counter() - t0
                elapsed, result = await afg(client, maps, "eager", coarsen)
                assert result == 2 * maps - 1
            times = rows.setdefault(label, {"start": [], "run": []})
            times["start"].append(started)
            times["run"].append(elapsed)
    kind = "processes" if processes else "threads"
    base = statistics.median(rows["tcp, no security"]["run"])
    grouped = "coarsened" if coarsen else "one Dask task per task"
    print(
        f"| cluster ({2 * maps - 1} tasks, {grouped}, 2x1 {kind}) | start s | run s | x tcp run |"
    )
    print("|---|---|---|---|")
    for label, times in rows.items():
        run = statistics.median(times["run"])
        start = statistics.median(times["start"])
        print(f"| {label} | {start:.2f} | {run:.3f} | {run / base:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--maps", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--tls", action="store_true", help="measure the cost of TLS")
    parser.add_argument("--no-coarsen", action="store_true", help="--tls: coarsen=False")
    args = parser.parse_args()
    if args.tls:
        asyncio.run(tls_cost(args.maps, args.repeat, args.processes, not args.no_coarsen))
    else:
        asyncio.run(main(args.maps, args.repeat, args.processes))

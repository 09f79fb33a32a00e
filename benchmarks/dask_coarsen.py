"""Coarsening on Dask: asyncflow_graph's Dask backend against ``dask.delayed`` +
``client.compute`` on the same graphs, on one cluster shared by every system.

Run: ``python -m benchmarks.dask_coarsen [--repeat 3] [--kinds threads,processes]
[--rss] [--out benchmarks/DASK_COARSEN_RESULTS.md]``.

For each worker kind a ``LocalCluster`` (2 workers x 1 thread) is started once and every
system runs on it, interleaved, ``--repeat`` times; the figure is the median wall time
from graph construction to having every result here (engine creation excluded, as
``client.compute`` excludes connecting). Workloads:

* W1: 10,000 independent no-op tasks, all gathered;
* W2: a chain of 2,000 no-op tasks;
* W3: 4,096 no-op maps and a binary-tree reduce (8,191 tasks);
* S10: 2,000 independent tasks of 10 ms each (``time.sleep``: it leaves the GIL, so
  2 workers can really run 2 at once even as threads); ideal = 2,000 x 10 ms / 2, and
  the tasks' own run time (measured inside each task) / 2: a sleep overshoots on a
  busy machine, and that is work, not scheduling.

Systems: ``dask`` (``optimize_graph=False`` for W1 and S10, whose 10,000 sinks the
default optimization culls one by one, quadratically; the default for the one-sink W2
and W3), ``afg eager`` and ``afg lazy`` (their measured durations kept across runs, per
cluster, as Dask's scheduler keeps its per-prefix durations), and ``afg eager, first
sight`` (the duration model emptied before each run: how it does on functions it never
measured). ``--rss``: W1 with 100,000 tasks in fresh client processes, one per system,
against one process cluster: peak RSS of the client process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks.tasks import step
from benchmarks.workloads import chain, fan_out, map_reduce

WORKLOADS: dict[str, tuple[Callable[..., list[Any]], int, str]] = {
    # name: (shape, n, what "step" is)
    "W1": (fan_out, 10_000, "noop"),
    "W2": (chain, 2_000, "noop"),
    "W3": (map_reduce, 4_096, "noop"),
    "S10": (fan_out, 2_000, "sleep"),
}
SLEEP = 0.01
WORKERS = 2
TARGETS = {"W1": 10.0, "W2": 20.0, "W3": 3.0}  # x dask's tasks/s
ROOT = Path(__file__).resolve().parent


def sleep10(*_: Any) -> float:
    """A 10 ms task (sleeps: releases the GIL); returns how long it really took (a
    sleep overshoots on a busy machine: that is work, not scheduling)."""
    t0 = perf_counter()
    time.sleep(SLEEP)
    return perf_counter() - t0


def body(kind: str) -> Callable[..., int]:
    return sleep10 if kind == "sleep" else step


#: (workload, system) -> seconds the S10 tasks really ran, per run
WORK: dict[tuple[str, str], list[float]] = {}
WORK_BY_KIND: dict[str, dict[tuple[str, str], list[float]]] = {}


def check(workload: str, results: list[Any]) -> float:
    """Assert every task ran once; returns the tasks' own run time (S10) or 0."""
    n = WORKLOADS[workload][1]
    if workload == "S10":
        assert len(results) == n and all(r >= SLEEP for r in results), workload
        return float(sum(results))
    total = sum(results)
    want = {"W1": n, "W2": n, "W3": 2 * n - 1}[workload]
    assert total == want, (workload, total, want)
    return 0.0


# --------------------------------------------------------------------------- systems


async def run_dask(client: Any, workload: str) -> float:
    import dask

    shape, n, kind = WORKLOADS[workload]
    task = dask.delayed(body(kind), pure=False)
    t0 = perf_counter()
    sinks = shape(lambda _stage, *deps: task(*deps), n)
    if len(sinks) > 1:
        results = await client.gather(client.compute(sinks, optimize_graph=False))
    else:
        results = [await client.compute(sinks[0])]
    elapsed = perf_counter() - t0
    WORK.setdefault((workload, "dask.delayed + client.compute"), []).append(
        check(workload, list(results))
    )
    return elapsed


async def run_afg(client: Any, workload: str, execution: str, fresh: bool = False) -> float:
    from asyncflow_graph import WorkflowEngine
    from asyncflow_graph.backends import DaskExecutionBackend, dask_refs

    if fresh:
        dask_refs.MODELS.clear()
    shape, n, kind = WORKLOADS[workload]
    flow = await WorkflowEngine.create(
        backend=DaskExecutionBackend(client=client), execution=execution
    )
    task = flow.function_task(body(kind))
    t0 = perf_counter()
    sinks = shape(lambda _stage, *deps: task(*deps), n)
    results = await asyncio.gather(*sinks)
    elapsed = perf_counter() - t0
    await flow.shutdown()
    name = f"afg {execution}" + (", first sight" if fresh else "")
    WORK.setdefault((workload, name), []).append(check(workload, list(results)))
    return elapsed


SYSTEMS: dict[str, Callable[[Any, str], Awaitable[float]]] = {
    "dask.delayed + client.compute": run_dask,
    "afg eager": lambda c, w: run_afg(c, w, "eager"),
    "afg lazy": lambda c, w: run_afg(c, w, "lazy"),
    "afg eager, first sight": lambda c, w: run_afg(c, w, "eager", fresh=True),
}


async def on_cluster(kind: str, repeat: int, workloads: list[str]) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    async with (
        LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=kind == "processes",
            dashboard_address=None,
            asynchronous=True,
            silence_logs=40,
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        # Warm-up (worker imports, first pickles), not measured.
        for run in SYSTEMS.values():
            await run(client, "W2")
        times: dict[str, dict[str, list[float]]] = {w: {s: [] for s in SYSTEMS} for w in workloads}
        for r in range(repeat):  # interleaved: drift hits every system alike
            for w in workloads:
                for name, run in SYSTEMS.items():
                    elapsed = await run(client, w)
                    times[w][name].append(elapsed)
                    print(f"{kind} {w} {name} run {r + 1}: {elapsed:.3f} s", file=sys.stderr)
                    await client.run(lambda: None)  # settle the workers between runs
        return times


# --------------------------------------------------------------------------- memory


def rss_child(system: str, address: str, n: int) -> None:
    """One client process: W1 with ``n`` tasks, prints its peak RSS."""
    from distributed import Client

    client = Client(address, set_as_default=False)
    import dask

    import asyncflow_graph  # noqa: F401 - both systems pay the same imports

    base = _rss_now()
    t0 = perf_counter()
    if system == "dask":
        task = dask.delayed(step, pure=False)
        results = client.gather(client.compute([task() for _ in range(n)], optimize_graph=False))
        assert sum(results) == n
    else:

        async def main() -> None:
            from asyncflow_graph import WorkflowEngine
            from asyncflow_graph.backends import DaskExecutionBackend

            flow = await WorkflowEngine.create(
                backend=DaskExecutionBackend(address=address), execution=system
            )
            task = flow.function_task(step)
            results = await asyncio.gather(*[task() for _ in range(n)])
            assert sum(results) == n
            await flow.shutdown()

        asyncio.run(main())
    elapsed = perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"system": system, "peak_mb": peak, "base_mb": base, "s": elapsed}))
    client.close()


def _rss_now() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_rss(n: int) -> list[dict[str, Any]]:
    from distributed import LocalCluster

    rows = []
    with LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as cluster:
        for system in ("eager", "lazy", "dask"):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.dask_coarsen", "--rss-child", system,
                 "--address", cluster.scheduler_address, "--rss-n", str(n)],
                cwd=ROOT.parent, capture_output=True, text=True, timeout=3600, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{system}: {proc.stderr[-2000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"rss {rows[-1]}", file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- report


def report(results: dict[str, Any], rss: list[dict[str, Any]] | None, repeat: int) -> str:
    import platform

    import dask
    import distributed

    out = [
        "# Coarsening on Dask: asyncflow_graph vs dask.delayed + client.compute",
        "",
        f"Generated by `python -m benchmarks.dask_coarsen --repeat {repeat}` on "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, dask {dask.__version__}, distributed "
        f"{distributed.__version__}. One `LocalCluster` (2 workers x 1 thread) per worker "
        "kind, shared by every system, runs interleaved; median wall time from graph "
        "construction to every result here. *x dask* = the system's tasks/s over dask's "
        "(dask's median time / the system's). S10's *target* column: wall time over the "
        "nominal ideal (2,000 x 10 ms / 2 workers), and over the measured one (the tasks' "
        "own run time inside the sleep / 2 workers).",
        "",
    ]
    for kind, times in results.items():
        out += [
            f"## {kind} workers",
            "",
            "| workload | tasks | system | median s | min-max s | tasks/s | x dask | target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for w, by_system in times.items():
            tasks = {"W1": 10_000, "W2": 2_000, "W3": 8_191, "S10": 2_000}[w]
            base = statistics.median(by_system["dask.delayed + client.compute"])
            for name, ts in by_system.items():
                med = statistics.median(ts)
                out.append(
                    f"| {w} | {tasks:,} | {name} | {med:.3f} | {min(ts):.3f}-{max(ts):.3f} | "
                    f"{tasks / med:,.0f} | {base / med:.1f} | "
                    f"{_target(kind, w, name, med, base)} |"
                )
        out.append("")
    if rss:
        out += [
            "## Client memory: W1 with 100,000 tasks through Dask",
            "",
            "One fresh client process per system against one process cluster (2 workers); "
            "peak RSS of the client process (`ru_maxrss`), and its RSS after the imports and "
            "the connection, before the graph.",
            "",
            "| system | peak RSS MB | RSS before MB | s |",
            "|---|---|---|---|",
        ]
        names = {"eager": "afg eager", "lazy": "afg lazy", "dask": "dask.delayed + client.compute"}
        for row in rss:
            out.append(
                f"| {names[row['system']]} | {row['peak_mb']:.0f} | {row['base_mb']:.0f} | "
                f"{row['s']:.1f} |"
            )
        out.append("")
    return "\n".join(out)


def _target(kind: str, workload: str, name: str, med: float, base: float) -> str:
    if workload == "S10":
        ideal = WORKLOADS["S10"][1] * SLEEP / WORKERS
        work = statistics.median(WORK_BY_KIND[kind][(workload, name)]) / WORKERS
        text = f"{med / ideal:.3f} x ideal {ideal:.0f} s; {med / work:.3f} x {work:.2f} s"
        if name.startswith("dask"):
            return text
        ok = med <= 1.1 * ideal and med <= base
        return f"{text}: {'met' if ok else 'MISSED'}"
    if name.startswith("dask"):
        return ""
    want = TARGETS[workload]
    return f">= {want:g}x: {'met' if base / med >= want else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", default="threads,processes")
    parser.add_argument("--workloads", default="W1,W2,W3,S10")
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--rss-n", type=int, default=100_000)
    parser.add_argument("--rss-child")
    parser.add_argument("--address")
    parser.add_argument("--out", default=str(ROOT / "DASK_COARSEN_RESULTS.md"))
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.address, args.rss_n)
        return
    workloads = args.workloads.split(",")
    results = {}
    for kind in args.kinds.split(","):
        WORK.clear()
        results[kind] = asyncio.run(on_cluster(kind, args.repeat, workloads))
        WORK_BY_KIND[kind] = dict(WORK)
    rss = measure_rss(args.rss_n) if args.rss else None
    text = report(results, rss, args.repeat)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Chaos campaign: a mixed 50,000-task run on local threads, a process pool and a real
Dask cluster while a driver kills worker processes at random; the same campaign
without faults is the reference.

Run: ``python -m benchmarks.chaos [--tasks 50000] [--kills 12] [--no-coarsen] [--out PATH]``
(default ``benchmarks/CHAOS_RESULTS.md``; ``--no-coarsen``: one Dask task per task).

* The campaign: ``tasks`` tasks in chains of three — a thread task, a process-pool
  task on its value, a Dask task on that — each with ``retries=``; every value is
  checked at the end.
* The driver: while the campaign runs, every 0.2-0.8 s (random) it kills a random
  worker process: one of the pool's (SIGKILL, SIGTERM or SIGSEGV), or one of the
  embedded Dask cluster's (SIGKILL or SIGSEGV; their nannies start new ones).
* Rows: tasks lost (a result missing or wrong: must be 0), futures left pending
  after the run (must be 0), tasks retried (submitted again by the engine after a
  failure), kills sent, wall time and its ratio to the run without faults.

Not a test (it takes minutes and depends on timing); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import DaskExecutionBackend
from asyncflow_graph.executor.events import RunObserver

SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV)
RETRIES = 8


def on_thread(i: int) -> int:
    return i + 1


def on_process(x: int) -> int:
    return x * 2


def on_dask(x: int) -> int:
    return x + 3


def expected(i: int) -> int:
    return (i + 1) * 2 + 3


class Submissions(RunObserver):
    """How often the engine submitted each key (more than once: retried)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    def on_submitted(self, backend: str, units: Any) -> None:
        for u in units:
            self.count.update(u.keys)


async def _targets(
    pool: LocalExecutionBackend, dask: DaskExecutionBackend
) -> list[tuple[int, str, tuple[signal.Signals, ...]]]:
    """Worker processes to kill, with the signals each may get. A Dask worker given
    SIGTERM retires cleanly and its nanny does not replace it (the cluster would
    run out of workers): Dask workers get SIGKILL or SIGSEGV, as from an OOM killer
    or a crash."""
    pids = [p.pid for p in getattr(pool.executor, "_processes", {}).values() if p.pid]
    targets = [(pid, "pool", SIGNALS) for pid in pids]
    try:
        ran = await asyncio.wait_for(dask.client.run(os.getpid), 5)
        targets += [(pid, "dask", (signal.SIGKILL, signal.SIGSEGV)) for pid in ran.values()]
    except Exception:  # a worker restarting: pick from the pool this time
        pass
    return targets


async def _driver(
    pool: LocalExecutionBackend, dask: DaskExecutionBackend, kills: int, stop: asyncio.Event
) -> Counter[str]:
    sent: Counter[str] = Counter()
    rng = random.Random(17)
    while not stop.is_set() and sum(sent.values()) < kills:
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(0.2, 0.8))
            break
        except TimeoutError:
            pass
        targets = await _targets(pool, dask)
        if not targets:
            continue
        pid, kind, signals = rng.choice(targets)
        sig = rng.choice(signals)
        try:
            os.kill(pid, sig)
            sent[f"{kind} {sig.name}"] += 1
        except ProcessLookupError:
            pass
    return sent


async def campaign(tasks: int, kills: int, coarsen: bool = True) -> dict[str, Any]:
    from distributed import LocalCluster
    from distributed.security import Security

    pool = LocalExecutionBackend(ProcessPoolExecutor(2), name="procs")
    # The embedded cluster's settings (TLS, temporary credentials), made here so that
    # it can adapt: a nanny whose worker was killed while starting gives up, and
    # adapt() starts a new one (a batch system would resubmit the worker job).
    cluster = await LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        protocol="tls",
        security=Security.temporary(),
        dashboard_address=None,
        asynchronous=True,
    )
    cluster.adapt(minimum=2, maximum=2, interval="500ms")
    dask = DaskExecutionBackend(cluster=cluster, coarsen=coarsen)
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="threads"), pool, dask])
    seen = Submissions()
    flow.add_observer(seen)
    t_thread = flow.function_task(on_thread, backend="threads", retries=RETRIES)
    t_proc = flow.function_task(on_process, backend="procs", retries=RETRIES)
    t_dask = flow.function_task(on_dask, backend="dask", retries=RETRIES)
    chains = tasks // 3
    stop = asyncio.Event()
    t0 = time.perf_counter()
    driver = asyncio.create_task(_driver(pool, dask, kills, stop))
    handles: list[Any] = []
    sinks = []
    for i in range(chains):
        first = t_thread(i)
        second = t_proc(first)
        sinks.append(t_dask(second))
        handles += (first, second, sinks[-1])
    results = await asyncio.gather(*sinks, return_exceptions=True)
    wall = time.perf_counter() - t0
    stop.set()
    sent = await driver
    pending = sum(not h.done() for h in handles)
    await flow.shutdown()
    await cluster.close()
    lost = sum(r != expected(i) for i, r in enumerate(results))
    errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    samples = {type(r).__name__: str(r)[:300] for r in results if isinstance(r, BaseException)}
    states = Counter(str(h.state) for h in handles)
    return {
        "tasks": chains * 3,
        "lost": lost,
        "pending": pending,
        "retried": sum(1 for n in seen.count.values() if n > 1),
        "resubmissions": sum(n - 1 for n in seen.count.values()),
        "kills": dict(sent),
        "errors": dict(errors),
        "samples": samples,
        "states": dict(states),
        "wall": wall,
    }


def report(clean: dict[str, Any], chaos: dict[str, Any], coarsen: bool = True) -> str:
    def kills(r: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(r["kills"].items())) or "none"

    rows = [
        ("tasks", clean["tasks"], chaos["tasks"]),
        ("tasks lost (missing or wrong result)", clean["lost"], chaos["lost"]),
        ("futures left pending", clean["pending"], chaos["pending"]),
        ("tasks retried (submitted again)", clean["retried"], chaos["retried"]),
        ("resubmissions", clean["resubmissions"], chaos["resubmissions"]),
        ("worker processes killed", kills(clean), kills(chaos)),
        ("failed results", clean["errors"] or "none", chaos["errors"] or "none"),
        ("wall time s", f"{clean['wall']:.1f}", f"{chaos['wall']:.1f}"),
        ("wall time vs no faults", "1.00", f"{chaos['wall'] / clean['wall']:.2f}"),
    ]
    lines = [
        "# Chaos campaign",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}. Generated by "
        "`python -m benchmarks.chaos` (see its docstring): chains thread -> process pool "
        f"-> Dask (embedded LocalCluster, 2 worker processes, TLS, coarsening "
        f"{'on' if coarsen else 'off'}), retries={RETRIES}, "
        "while a driver kills random worker processes (SIGKILL, SIGTERM, SIGSEGV).",
        "",
        "| | no faults | workers killed at random |",
        "|---|---|---|",
        *(f"| {name} | {a} | {b} |" for name, a, b in rows),
        "",
    ]
    return "\n".join(lines)


async def main(tasks: int, kills: int, out: Path, coarsen: bool = True) -> None:
    clean = await campaign(tasks, 0, coarsen)
    chaos = await campaign(tasks, kills, coarsen)
    text = report(clean, chaos, coarsen)
    out.write_text(text)
    print(text)
    for run in (clean, chaos):
        print("states:", run["states"], "samples:", run["samples"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--no-coarsen", action="store_true", help="one Dask task per task")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("CHAOS_RESULTS.md"))
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.kills, args.out, not args.no_coarsen))

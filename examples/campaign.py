"""HPC campaign manager: simulate -> analyze, train -> evaluate on CPU and GPU slots.

Three studies run side by side, each in its own ``workflow_scope``. A study runs a
sweep of simulations on the CPU pool, analyzes the ones that succeeded (one
simulation of study-1 diverges, and the manager carries on without it), trains a
model on the GPU pool and evaluates it on the CPU pool. The manager hands out slots
from a small resource pool (4 CPU, 2 GPU), so a task is submitted only when a slot
is free, and announces each assignment as a custom telemetry event.

Telemetry: OpenTelemetry spans (kept in memory here; pass an OTLP exporter's
processor to see them in Jaeger), AsyncFlow events, and the JSONL event log; the
timeline PNGs are drawn from that log. Everything goes to ``--out``
(default ``out/campaign``)::

    python examples/campaign.py --out /tmp/campaign
    python -m asyncflow_graph timeline /tmp/campaign/campaign.jsonl -o again.png
"""

import argparse
import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.telemetry import plot_timeline

SLOTS = {"cpu": 4, "gpu": 2}
STUDIES = 3
SWEEP = 3  # simulations per study
SCALE = 1.0  # seconds of simulated work per unit


class ResourcePool:
    """CPU/GPU slots: a task is created only once a slot of its kind is free."""

    def __init__(self, slots, telemetry):
        self.free = {kind: asyncio.Semaphore(n) for kind, n in slots.items()}
        self.telemetry = telemetry

    async def run(self, kind, task, *args):
        await self.free[kind].acquire()
        handle = task(*args)
        self.telemetry.emit(
            self.telemetry.event(
                "campaign.ResourceAssigned",
                task_id=handle.key,
                backend=kind,
                attributes={"resource": kind, "task": task.__name__},
            )
        )
        handle.add_done_callback(lambda _: self.free[kind].release())
        return await handle


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out") / "campaign")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    cpu = LocalExecutionBackend(ThreadPoolExecutor(SLOTS["cpu"]), name="cpu")
    gpu = LocalExecutionBackend(ThreadPoolExecutor(SLOTS["gpu"]), name="gpu")
    flow = await WorkflowEngine.create(backend=[cpu, gpu])
    telemetry = await flow.start_telemetry(checkpoint_path=out / "campaign.jsonl", keep_spans=True)
    seen = Counter()
    telemetry.subscribe(lambda event: seen.update([event.event_type]))
    pool = ResourcePool(SLOTS, telemetry)

    @flow.function_task(backend="cpu")
    def simulate(study, param):
        time.sleep(0.25 * SCALE)
        if (study, param) == (1, 2):
            raise RuntimeError(f"simulation {study}.{param} diverged")
        return [param * x for x in range(5)]

    @flow.function_task(backend="cpu")
    def analyze(*runs):
        time.sleep(0.1 * SCALE)
        return sum(sum(r) for r in runs) / len(runs)

    @flow.function_task(backend="gpu")
    def train(feature):
        time.sleep(0.4 * SCALE)
        return {"weight": feature / 10}

    @flow.function_task(backend="cpu")
    def evaluate(model):
        time.sleep(0.15 * SCALE)
        return round(1 - 1 / (1 + model["weight"]), 3)

    async def study(i):
        async with flow.workflow_scope(f"study-{i}"):
            sims = [pool.run("cpu", simulate, i, p) for p in range(SWEEP)]
            results = await asyncio.gather(*sims, return_exceptions=True)
            good = [r for r in results if not isinstance(r, BaseException)]
            feature = await pool.run("cpu", analyze, *good)
            model = await pool.run("gpu", train, feature)
            score = await pool.run("cpu", evaluate, model)
            return len(good), score

    start = time.perf_counter()
    outcomes = await asyncio.gather(*(study(i) for i in range(STUDIES)))
    elapsed = time.perf_counter() - start
    for i, (n_good, score) in enumerate(outcomes):
        print(f"study-{i}: {n_good}/{SWEEP} simulations, score {score}")
    print(f"elapsed: {elapsed:.2f}s")

    await telemetry.stop()
    summary = telemetry.summary()
    print(f"tasks: {summary['tasks']}")
    print(f"spans: {dict(Counter(span.name for span in telemetry.read_traces()))}")
    print(f"events: {dict(sorted(seen.items()))}")
    log = Path(telemetry.checkpoint_file)
    print(f"event log: {log}")
    for group_by in ("workflow", "backend"):
        png = plot_timeline(log, out / f"timeline_by_{group_by}.png", group_by=group_by)
        print(f"timeline: {png}")
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

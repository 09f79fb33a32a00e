"""A small campaign run twice against one cache directory: the second run is served
from the cache, and explain() says so before anything runs."""

import asyncio
import tempfile
from pathlib import Path

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def campaign(cache_dir: Path) -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), cache=cache_dir)

    @flow.function_task
    async def simulate(i: int) -> int:
        print(f"  simulating {i}")
        return i * i

    @flow.function_task(cache_ignore=("verbose",))
    async def summarize(results: list[int], verbose: bool = False) -> int:
        return sum(results)

    total = summarize([simulate(i) for i in range(3)], verbose=True)
    print(flow.explain(total))
    print("  total =", await total)
    await flow.shutdown()
    stats = flow.cache.stats()
    print(f"  hits={stats.hits} misses={stats.misses}")


with tempfile.TemporaryDirectory() as tmp:
    for run in (1, 2):
        print(f"run {run}:")
        asyncio.run(campaign(Path(tmp) / "cache"))

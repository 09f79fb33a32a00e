"""The result cache with real backends: prompt tasks against the embedded llama.cpp
server, and Dask worker processes writing entries into a shared directory."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import dask_cluster
import pytest
from llm_server import CountingProxy, llm_missing, llm_server_fixture  # noqa: F401

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.cache.store import MAGIC

dask_subprocess_cluster = dask_cluster.dask_subprocess_cluster

COUNTRIES = ["France", "Italy", "Spain", "Japan"]


@pytest.mark.timeout(90)
@pytest.mark.skipif(llm_missing() is not None, reason=str(llm_missing()))
async def test_prompt_tasks_are_served_from_the_cache_on_the_second_run(llm_server, tmp_path):
    from asyncflow_graph.backends import OpenAIInferenceBackend

    async def run(max_tokens: int) -> tuple[list[str], int, Any]:
        async with CountingProxy(llm_server.base_url) as proxy:
            ai = OpenAIInferenceBackend(
                "ai", base_url=proxy.base_url, temperature=0, max_tokens=max_tokens
            )
            flow = await WorkflowEngine.create(
                backend=[LocalExecutionBackend(name="compute"), ai], work_dir=tmp_path
            )

            @flow.prompt_task(backend="ai", cache=True)
            def capital(country: str) -> str:
                return f"Q: What is the capital of {country}?\nA:"

            try:
                answers = await asyncio.gather(*(capital(c) for c in COUNTRIES))
            finally:
                await flow.shutdown()
        return answers, len(proxy.posts("/completions")), flow.cache.stats()

    first, posts, stats = await run(max_tokens=8)
    assert posts >= 1 and stats.misses == len(COUNTRIES) and "Paris" in first[0]
    again, posts, stats = await run(max_tokens=8)
    assert posts == 0 and again == first  # not one request reached the server
    assert stats.hits == len(COUNTRIES) and stats.time_saved > 0
    _, posts, stats = await run(max_tokens=6)  # other generation options: another key
    assert posts >= 1 and stats.hits == 0


# -- Dask: module-level, so the worker processes import them by reference ----------------


def produce(i: int, log: str) -> dict[str, int]:
    with open(log, "a") as f:
        f.write(f"produce {i} {os.getpid()}\n")
    return {"i": i, "square": i * i}


def combine(a: dict[str, int], b: dict[str, int], log: str) -> int:
    with open(log, "a") as f:
        f.write(f"combine {os.getpid()}\n")
    return a["square"] + b["square"]


def _writers(cache_dir: Path) -> dict[str, int]:
    """task name -> pid of the process that wrote its entry (from the blob headers)."""
    out = {}
    for blob in (cache_dir / "entries").glob("*/*"):
        data = blob.read_bytes()
        n = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
        header = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + n])
        out[f"{header['task']}"] = int(header["writer"].partition("@")[0])
    return out


@pytest.mark.timeout(120)
async def test_dask_workers_write_entries_to_a_shared_directory(dask_subprocess_cluster, tmp_path):
    from asyncflow_graph.backends import DaskExecutionBackend

    shared = tmp_path / "shared-cache"  # an NFS/Lustre path on an HPC machine
    log = str(tmp_path / "ran.log")

    async def run() -> tuple[int, Any]:
        backend = DaskExecutionBackend(name="dask", address=dask_subprocess_cluster.address)
        flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path, cache=shared)
        prod = flow.function_task(produce, backend="dask")
        comb = flow.function_task(combine, backend="dask")
        try:
            return await comb(prod(3, log), prod(4, log), log), flow.cache
        finally:
            await flow.shutdown()

    value, cache = await run()
    assert value == 25
    writers = _writers(shared)
    assert set(writers) == {"produce", "combine"} and len(list(shared.glob("entries/*/*"))) == 3
    assert os.getpid() not in writers.values()  # every entry was written by a worker
    assert cache.stats().bytes_written == 0 and cache.stats().misses == 3

    value, cache = await run()
    assert value == 25
    assert Path(log).read_text().count("\n") == 3  # nothing ran the second time
    assert cache.stats().hits == 3

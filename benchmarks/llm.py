"""Prompt throughput of OpenAIInferenceBackend against a real LLM server.

``python -m benchmarks.llm [--prompts 64] [--max-tokens 16] [--repeat 3] [--out PATH]``

One embedded llama.cpp server (xllamacpp, SmolLM2-135M-Instruct Q4_1, 16 slots) serves
every run in this process. Each prompt asks for exactly ``--max-tokens`` tokens
(``ignore_eos``, temperature 0, no prompt cache) so all runs do the same work. Configurations run
interleaved (a, b, c, a, b, c, ...) so drift of the machine hits all of them; each
cell is the median of ``--repeat`` runs.

* through the backend: a fresh engine (LocalExecutionBackend + the AI backend) per
  run; timed from creating the first prompt task to having every answer;
* direct: the same httpx client settings, request bodies, batching and concurrency,
  with no engine and no backend: the floor the backend is compared with;
* overhead: the same two against an in-process fake server that answers at once
  (httpx.MockTransport), where the client side is all there is to measure;
* arrival: prompts fed by thread-pool tasks finish over several loop turns; with and
  without a batching window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import OpenAIInferenceBackend
from asyncflow_graph.llm_server import start_local_llm_server

Run = Callable[[], Awaitable[dict[str, float]]]
#: every run does the same work: exactly max_tokens tokens per prompt, and no reuse of
#: a slot's cached prompt from the previous run (llama.cpp caches prompts per slot)
SAME_WORK = {"ignore_eos": True, "cache_prompt": False}


def prompts(n: int) -> list[str]:
    return [f"Q: What is {i} plus {i}?\nA:" for i in range(n)]


async def through_backend(
    base_url: str, n: int, max_tokens: int, transport: Any = None, **kwargs: Any
) -> dict[str, float]:
    ai = OpenAIInferenceBackend(
        "ai",
        base_url=base_url,
        max_tokens=max_tokens,
        temperature=0,
        extra_body=SAME_WORK,
        transport=transport,
        **kwargs,
    )
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="compute"), ai])

    @flow.prompt_task(backend="ai")
    def ask(text: str) -> str:
        return text

    t0 = time.perf_counter()
    answers = await asyncio.gather(*(ask(p) for p in prompts(n)))
    elapsed = time.perf_counter() - t0
    assert len(answers) == n and all(isinstance(a, str) for a in answers)
    requests = ai.stats.requests
    await flow.shutdown()
    return {"seconds": elapsed, "requests": requests}


async def fed_by_compute(
    base_url: str, n: int, max_tokens: int, batch_window: float
) -> dict[str, float]:
    """Prompts whose input comes from a thread-pool task: they become ready over
    several loop turns, as in a real pipeline."""
    ai = OpenAIInferenceBackend(
        "ai",
        base_url=base_url,
        max_tokens=max_tokens,
        temperature=0,
        extra_body=SAME_WORK,
        batch_window=batch_window,
    )
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="compute"), ai])

    @flow.function_task
    def prepare(i: int) -> str:
        return f"Q: What is {i} plus {i}?\nA:"

    @flow.prompt_task(backend="ai")
    def ask(text: str) -> str:
        return text

    t0 = time.perf_counter()
    answers = await asyncio.gather(*(ask(prepare(i)) for i in range(n)))
    elapsed = time.perf_counter() - t0
    assert len(answers) == n
    requests = ai.stats.requests
    await flow.shutdown()
    return {"seconds": elapsed, "requests": requests}


async def direct(
    base_url: str, n: int, max_tokens: int, max_batch: int, concurrency: int, transport: Any = None
) -> dict[str, float]:
    """The same requests with httpx alone: list prompts of ``max_batch``, streamed,
    ``concurrency`` at a time, every SSE line parsed."""
    texts = prompts(n)
    chunks = [texts[i : i + max_batch] for i in range(0, n, max_batch)]
    gate = asyncio.Semaphore(concurrency)
    answers: list[str] = []

    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(None, connect=5),
        limits=httpx.Limits(max_connections=concurrency),
        transport=transport,
    ) as client:

        async def send(chunk: list[str]) -> None:
            body = {
                "model": "smollm2",
                "prompt": chunk if len(chunk) > 1 else chunk[0],
                "max_tokens": max_tokens,
                "temperature": 0,
                **SAME_WORK,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            for attempt in range(3):  # the same immediate retry as the backend's, below
                parts: dict[int, list[str]] = {}
                try:
                    async with gate, client.stream("POST", "/completions", json=body) as resp:
                        resp.raise_for_status()
                        async for line in resp.aiter_lines():
                            if not line.startswith("data:") or line.endswith("[DONE]"):
                                continue
                            event = json.loads(line[5:])
                            for c in (event or {}).get("choices") or ():
                                parts.setdefault(c["index"], []).append(c["text"])
                except httpx.RemoteProtocolError:
                    # llama.cpp may close a kept-alive connection as it is reused
                    if attempt == 2:
                        raise
                    continue
                answers.extend("".join(p) for p in parts.values())
                return

        t0 = time.perf_counter()
        await asyncio.gather(*(send(c) for c in chunks))
        elapsed = time.perf_counter() - t0
    assert len(answers) == n
    return {"seconds": elapsed, "requests": len(chunks)}


def instant_server() -> httpx.MockTransport:
    """A fake server answering every prompt at once with one streamed token."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "fake"}]})
        body = json.loads(request.content)
        batch = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        usage = {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}
        events = [
            {"choices": [{"index": i, "text": " 2", "finish_reason": "length"}], "usage": usage}
            for i in range(len(batch))
        ]
        lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        return httpx.Response(
            200, content="".join(lines).encode(), headers={"content-type": "text/event-stream"}
        )

    return httpx.MockTransport(handle)


async def measure(configs: dict[str, Run], repeat: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(repeat):
        for name, run in configs.items():  # interleaved
            runs[name].append(await run())
    return {
        name: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "min": min(r["seconds"] for r in rs),
            "max": max(r["seconds"] for r in rs),
            "requests": statistics.median(r["requests"] for r in rs),
        }
        for name, rs in runs.items()
    }


def table(rows: list[tuple[str, str, dict[str, float], int]]) -> list[str]:
    out = [
        "| configuration | path | requests | median s | min-max s | tasks/s | best tasks/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, path, cell, n in rows:
        out.append(
            f"| {label} | {path} | {cell['requests']:.0f} | {cell['seconds']:.3f} | "
            f"{cell['min']:.2f}-{cell['max']:.2f} | {n / cell['seconds']:.1f} | "
            f"{n / cell['min']:.1f} |"
        )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fake-prompts", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).with_name("LLM_RESULTS.md")))
    args = parser.parse_args()
    n, m, fake_n = args.prompts, args.max_tokens, args.fake_prompts

    server = await asyncio.to_thread(start_local_llm_server, n_parallel=16, n_ctx=8192)
    url = server.base_url
    try:
        await through_backend(url, n, m)  # warm-up: the server's first batches
        real = await measure(
            {
                "batched": lambda: through_backend(url, n, m),
                "batched-direct": lambda: direct(url, n, m, 32, 8),
                "one-per-request": lambda: through_backend(url, n, m, max_batch=1),
                "one-per-request-direct": lambda: direct(url, n, m, 1, 8),
                "window-0": lambda: fed_by_compute(url, n, m, 0.0),
                "window-10ms": lambda: fed_by_compute(url, n, m, 0.01),
            },
            args.repeat,
        )
    finally:
        server.stop()
    fake = "http://fake-llm/v1"
    instant = await measure(
        {
            "fake-batched": lambda: through_backend(fake, fake_n, 1, instant_server()),
            "fake-batched-direct": lambda: direct(fake, fake_n, 1, 32, 8, instant_server()),
            "fake-one": lambda: through_backend(fake, fake_n, 1, instant_server(), max_batch=1),
            "fake-one-direct": lambda: direct(fake, fake_n, 1, 1, 8, instant_server()),
        },
        args.repeat,
    )
    report(args, real, instant)


def report(
    args: argparse.Namespace,
    real: dict[str, dict[str, float]],
    instant: dict[str, dict[str, float]],
) -> None:
    n, fake_n = args.prompts, args.fake_prompts
    lines = [
        "# LLM inference benchmark",
        "",
        f"`python -m benchmarks.llm` — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, httpx {httpx.__version__}. "
        f"Embedded llama.cpp server (xllamacpp), SmolLM2-135M-Instruct Q4_1, 16 slots; "
        f"{n} prompts, exactly {args.max_tokens} tokens each (temperature 0, ignore_eos, "
        f"cache_prompt off), "
        f"streamed; max_concurrency 8; median of {args.repeat} interleaved runs.",
        "",
        "## Real server: batched vs one request per prompt",
        "",
        *table(
            [
                ("batched (max_batch=32)", "backend", real["batched"], n),
                ("batched (max_batch=32)", "direct httpx", real["batched-direct"], n),
                ("one request per prompt (max_batch=1)", "backend", real["one-per-request"], n),
                ("one request per prompt", "direct httpx", real["one-per-request-direct"], n),
            ]
        ),
        "",
        "## Orchestration overhead per prompt",
        "",
        "(backend - direct) / prompts, from the medians and from the best runs. Against the",
        "real server the difference is inside the run-to-run spread above (a shared 2-core",
        "machine: the server's decoding threads, the client and other jobs share the cores);",
        "the instant fake server isolates the client side and is the precise measure.",
        "",
        "| server | mode | per prompt (medians) | per prompt (best runs) |",
        "|---|---|---:|---:|",
    ]
    for server_name, cells, count, (b, d, o, od) in (
        (
            "real",
            real,
            n,
            ("batched", "batched-direct", "one-per-request", "one-per-request-direct"),
        ),
        (
            "instant fake",
            instant,
            fake_n,
            ("fake-batched", "fake-batched-direct", "fake-one", "fake-one-direct"),
        ),
    ):
        for mode, x, y in (("batched", b, d), ("one per request", o, od)):
            per = (cells[x]["seconds"] - cells[y]["seconds"]) / count * 1e6
            best = (cells[x]["min"] - cells[y]["min"]) / count * 1e6
            lines.append(f"| {server_name} | {mode} | {per:.0f} µs | {best:.0f} µs |")
    lines += [
        "",
        f"## Instant fake server ({fake_n} prompts, client side only)",
        "",
        *table(
            [
                ("batched (max_batch=32)", "backend", instant["fake-batched"], fake_n),
                ("batched (max_batch=32)", "direct httpx", instant["fake-batched-direct"], fake_n),
                ("one request per prompt", "backend", instant["fake-one"], fake_n),
                ("one request per prompt", "direct httpx", instant["fake-one-direct"], fake_n),
            ]
        ),
        "",
        "## Prompts arriving over several loop turns (fed by thread-pool tasks)",
        "",
        *table(
            [
                ("batch_window=0 (default)", "backend", real["window-0"], n),
                ("batch_window=10 ms", "backend", real["window-10ms"], n),
            ]
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    asyncio.run(main())

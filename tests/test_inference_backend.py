"""OpenAIInferenceBackend against a real OpenAI-compatible server: llama.cpp's, embedded
by xllamacpp, serving SmolLM2-135M-Instruct (see llm_server.py). A counting proxy in
front of the server shows what reaches it."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from llm_server import CountingProxy, ServerProcess, llm_missing, llm_server_fixture  # noqa: F401

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import OpenAIInferenceBackend
from asyncflow_graph.backends.openai import InferenceServerError
from asyncflow_graph.errors import DependencyFailureError, TaskTimeoutError

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(llm_missing() is not None, reason=str(llm_missing())),
]


async def make_engine(base_url: str, **kwargs) -> tuple[WorkflowEngine, OpenAIInferenceBackend]:
    kwargs.setdefault("temperature", 0)
    ai = OpenAIInferenceBackend("ai", base_url=base_url, **kwargs)
    flow = await WorkflowEngine.create(backend=[LocalExecutionBackend(name="compute"), ai])
    return flow, ai


async def slots_idle_within(base_url: str, seconds: float) -> bool:
    """Poll llama.cpp's /slots until no slot is generating (the server's own view)."""
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient() as client:
        while time.perf_counter() < deadline:
            slots = (await client.get(base_url.removesuffix("/v1") + "/slots")).json()
            if not any(slot.get("is_processing") for slot in slots):
                return True
            await asyncio.sleep(0.05)
    return False


async def test_single_prompt(llm_server):
    flow, ai = await make_engine(llm_server.base_url, max_tokens=12)

    @flow.prompt_task(backend="ai")
    def capital(country: str) -> str:
        return f"Q: What is the capital of {country}?\nA:"

    fut = capital("France")
    answer = await fut
    assert isinstance(answer, str) and answer.strip()
    assert "Paris" in answer
    usage = ai.usage[fut.key]
    assert usage.batch_size == 1 and not usage.shared and 0 < usage.completion_tokens <= 12
    assert usage.prompt_tokens > 0 and usage.finish_reason in ("stop", "length")
    assert ai.model == llm_server.model  # discovered through /v1/models
    await flow.shutdown()


async def test_32_prompts_reach_the_server_in_fewer_requests(llm_server):
    async with CountingProxy(llm_server.base_url) as proxy:
        flow, ai = await make_engine(proxy.base_url, max_tokens=4, max_batch=16)

        @flow.prompt_task(backend="ai")
        def count(n: int) -> str:
            return f"{n}, {n + 1}, {n + 2},"

        futures = [count(n) for n in range(32)]
        answers = await asyncio.gather(*futures)
        await flow.shutdown()
    posts = proxy.posts("/v1/completions")
    assert len(posts) == 2 < 32
    assert [p.prompts for p in posts] == [16, 16]
    assert all(isinstance(a, str) and a for a in answers)
    # Answers come back in their prompt's place: the model continues each count.
    matching = sum(str(n + 3) in a for n, a in enumerate(answers))
    assert matching >= 24, answers
    assert ai.stats.requests == 2 and ai.stats.prompts == 32
    # Streamed, llama.cpp reports each prompt's own usage even inside a batch.
    for f in futures:
        usage = ai.usage[f.key]
        assert usage.batch_size == 16 and not usage.shared and usage.completion_tokens <= 4


async def test_chat_endpoint_with_system_prompt(llm_server):
    async with CountingProxy(llm_server.base_url) as proxy:
        flow, ai = await make_engine(
            proxy.base_url, endpoint="chat", max_tokens=8, max_concurrency=4
        )

        @flow.prompt_task(backend="ai", system="You are a helpful assistant. Answer in one word.")
        def colour(thing: str) -> str:
            return f"What colour is {thing}?"

        things = ["the sky", "grass", "snow", "a banana", "coal"]
        futures = [colour(t) for t in things]
        answers = await asyncio.gather(*futures)
        await flow.shutdown()
    assert all(isinstance(a, str) and a.strip() for a in answers)
    posts = proxy.posts("/v1/chat/completions")
    assert len(posts) == 5  # one request per prompt, up to 4 at a time
    assert posts[0].json()["messages"][0] == {
        "role": "system",
        "content": "You are a helpful assistant. Answer in one word.",
    }
    assert all(ai.usage[f.key].total_tokens > 0 for f in futures)


async def test_dependency_feeds_the_prompt_its_resolved_value(llm_server):
    async with CountingProxy(llm_server.base_url) as proxy:
        flow, ai = await make_engine(proxy.base_url, max_tokens=8)
        seen: list[object] = []

        @flow.function_task
        async def pick_country() -> str:
            await asyncio.sleep(0.01)
            return "France"

        @flow.prompt_task(backend="ai")
        def capital(country) -> str:
            seen.append(country)
            return f"Q: What is the capital of {country}?\nA:"

        @flow.function_task
        def shout(text: str) -> str:
            return text.strip().upper()

        result = await shout(capital(pick_country()))
        await flow.shutdown()
    assert seen == ["France"]  # the builder got the value, not a future
    assert proxy.posts("/completions")[0].json()["prompt"].endswith("capital of France?\nA:")
    assert "PARIS" in result


async def test_cancel_closes_the_connection_to_the_server(llm_server):
    async with CountingProxy(llm_server.base_url) as proxy:
        flow, ai = await make_engine(
            proxy.base_url, max_tokens=400, extra_body={"ignore_eos": True}
        )

        @flow.prompt_task(backend="ai")
        def ramble() -> str:
            return "Once upon a time"

        fut = ramble()
        await proxy.seen.wait()
        t0 = time.perf_counter()
        fut.cancel()
        await asyncio.wait_for(proxy.closed.wait(), 5)
        assert time.perf_counter() - t0 < 2  # closed at once, not after 400 tokens
        assert fut.cancelled()
        # The server itself stops generating (the answer streams, so it notices).
        assert await slots_idle_within(llm_server.base_url, 2.0)

        @flow.prompt_task(backend="ai", max_tokens=4)
        def short() -> str:
            return "Hello"

        assert isinstance(await short(), str)  # the backend goes on serving
        await flow.shutdown()


async def test_request_timeout_and_task_timeout(llm_server):
    # 400 tokens take several seconds here; 2 tokens well under the 2 s limit.
    flow, ai = await make_engine(
        llm_server.base_url, timeout=2, max_tokens=400, extra_body={"ignore_eos": True}
    )

    @flow.prompt_task(backend="ai")
    def ramble() -> str:
        return "Once upon a time"

    @flow.prompt_task(backend="ai", max_tokens=2)
    def quick() -> str:
        return "Hi"

    slow, fast = ramble(), quick()
    with pytest.raises(TaskTimeoutError, match="timeout=2.0 s"):
        await slow
    assert isinstance(await fast, str)  # a separate request: unaffected
    await flow.shutdown()

    # A task's own timeout= fails that task only, even inside a batch.
    flow, ai = await make_engine(
        llm_server.base_url, max_tokens=64, extra_body={"ignore_eos": True}
    )

    @flow.prompt_task(backend="ai")
    def story(start: str) -> str:
        return start

    impatient = story("It was a dark night", task_description={"timeout": 0.05})
    patient = story("The sun rose")
    with pytest.raises(TaskTimeoutError):
        await impatient
    assert isinstance(await patient, str)
    assert ai.usage[patient.key].batch_size == 2
    await flow.shutdown()


@pytest.mark.timeout(90)
async def test_server_killed_mid_run_fails_tasks_and_the_engine_lives():
    with ServerProcess(n_parallel=4) as server:
        async with CountingProxy(server.base_url) as proxy:
            flow, ai = await make_engine(
                proxy.base_url, max_tokens=400, retries=2, extra_body={"ignore_eos": True}
            )

            @flow.prompt_task(backend="ai")
            def ramble(i: int) -> str:
                return f"Story number {i}:"

            @flow.function_task
            def keep(text: str) -> str:
                return text

            futures = [ramble(i) for i in range(4)]
            dependents = [keep(f) for f in futures]
            await proxy.seen.wait()
            server.kill()
            t0 = time.perf_counter()
            results = await asyncio.gather(*futures, return_exceptions=True)
            assert time.perf_counter() - t0 < 10
            for r in results:
                assert isinstance(r, InferenceServerError), r
                assert proxy.base_url in str(r) and "after 3 attempt(s)" in str(r)
            for d in dependents:
                with pytest.raises(DependencyFailureError):
                    await d

            @flow.function_task
            def alive() -> str:
                return "alive"

            assert await alive() == "alive"  # the engine and other backends live on
            with pytest.raises(InferenceServerError, match="cannot reach"):
                await ramble(99)  # later prompts fail cleanly too
            await flow.shutdown()

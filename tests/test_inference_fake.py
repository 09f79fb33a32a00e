"""OpenAIInferenceBackend against a fake OpenAI server (httpx.MockTransport): batching,
retries and backoff, error messages, timeouts, cancellation, usage records, bad input.
The real-server tests are in test_inference_backend.py."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import OpenAIInferenceBackend
from asyncflow_graph.backends.openai import InferenceServerError
from asyncflow_graph.errors import (
    ConfigurationError,
    DependencyFailureError,
    TaskTimeoutError,
    UnknownOptionError,
)

pytestmark = pytest.mark.timeout(20)

URL = "http://fake-llm:8000/v1"
Behaviour = Callable[[httpx.Request, dict[str, Any]], Awaitable[httpx.Response | None]]


class FakeOpenAI:
    """Answers like an OpenAI server: echoes each prompt (choices in reverse order,
    so matching by ``index`` is exercised). ``behave`` may override an answer."""

    def __init__(self, behave: Behaviour | None = None) -> None:
        self.behave = behave
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.active = 0
        self.max_active = 0
        self.aborted = 0  # requests the client gave up on (cancelled mid-flight)
        self.transport = httpx.MockTransport(self.handle)
        self._arrived = asyncio.Condition()

    async def until_active(self, n: int) -> None:
        """Wait until ``n`` requests are in flight at once."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.active >= n)

    def completions(self) -> list[dict[str, Any]]:
        return [b for b in self.bodies if "prompt" in b or "messages" in b]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "fake-model"}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        async with self._arrived:
            self._arrived.notify_all()
        try:
            if self.behave is not None:
                resp = await self.behave(request, body)
                if resp is not None:
                    return resp
            return echo(body)
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        finally:
            self.active -= 1


def held_until(gate: asyncio.Event, started: asyncio.Event | None = None) -> Behaviour:
    """A behaviour that holds every request until ``gate`` is set, then answers as
    usual; ``started`` is set when a request arrives."""

    async def hold(request: httpx.Request, body: dict[str, Any]) -> None:
        if started is not None:
            started.set()
        await gate.wait()

    return hold


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def echo(body: dict[str, Any], usage: str = "own") -> httpx.Response:
    """The echo answer, streamed (server-sent events) when the body asks for it.
    ``usage``: "own" puts each prompt's usage in its last chunk (llama.cpp), "request"
    sends one usage chunk for the whole request at the end (vLLM, OpenAI)."""
    if "messages" in body:
        texts = ["chat:" + "|".join(m["content"] for m in body["messages"])]
    else:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        texts = [f"echo:{p}" for p in prompts]
    if not body.get("stream"):
        return httpx.Response(200, json={"choices": choices_of(body, texts), "usage": USAGE})
    return httpx.Response(
        200,
        content=sse(stream_events(body, texts, usage)),
        headers={"content-type": "text/event-stream"},
    )


def choices_of(body: dict[str, Any], texts: list[str]) -> list[dict[str, Any]]:
    if "messages" in body:
        return [{"index": 0, "message": {"role": "assistant", "content": texts[0]}}]
    choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
    return choices[::-1]  # out of order: answers are matched by index


def stream_events(body: dict[str, Any], texts: list[str], usage: str = "own") -> list[Any]:
    chat = "messages" in body

    def choice(i: int, piece: str | None, reason: str | None) -> dict[str, Any]:
        if chat:
            return {
                "index": i,
                "delta": {"content": piece} if piece else {},
                "finish_reason": reason,
            }
        return {"index": i, "text": piece or "", "finish_reason": reason}

    events: list[Any] = [None]  # llama.cpp opens with "data: null"
    order = list(range(len(texts)))[::-1]
    for i in order:  # two pieces per answer, interleaved between prompts
        events.append({"choices": [choice(i, texts[i][:3], None)]})
    for i in order:
        events.append({"choices": [choice(i, texts[i][3:], None)]})
    for i in order:
        last: dict[str, Any] = {"choices": [choice(i, None, "stop")]}
        if usage == "own":
            last["usage"] = USAGE
        events.append(last)
    if usage == "request":
        events.append({"choices": [], "usage": USAGE})
    return events


def sse(events: list[Any]) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def backend(fake: FakeOpenAI, **kwargs: Any) -> OpenAIInferenceBackend:
    kwargs.setdefault("backoff", 0.001)
    return OpenAIInferenceBackend("ai", base_url=URL, transport=fake.transport, **kwargs)


async def engine(ai: OpenAIInferenceBackend) -> WorkflowEngine:
    return await WorkflowEngine.create(backend=[LocalExecutionBackend(name="compute"), ai])


# -- batching ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_prompts_ready_together_go_in_one_request_matched_by_index(stream):
    fake = FakeOpenAI()
    ai = backend(fake, max_tokens=8, stream=stream)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"prompt {i}"

    out = await asyncio.gather(*(ask(i) for i in range(10)))
    assert out == [f"echo:prompt {i}" for i in range(10)]
    assert len(fake.completions()) == 1
    assert fake.completions()[0]["prompt"] == [f"prompt {i}" for i in range(10)]
    assert fake.completions()[0]["model"] == "fake-model"  # discovered through /v1/models
    await flow.shutdown()


async def test_max_batch_splits_and_max_concurrency_bounds_requests():
    release = asyncio.Event()
    fake = FakeOpenAI(held_until(release))
    ai = backend(fake, max_batch=4, max_concurrency=2)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = [ask(i) for i in range(10)]
    await fake.until_active(2)
    assert len(fake.bodies) == 2  # the third batch waits for a free slot
    release.set()
    assert await asyncio.gather(*futures) == [f"echo:p{i}" for i in range(10)]
    assert [len(b["prompt"]) for b in fake.completions()] == [4, 4, 2]
    assert fake.max_active == 2
    await flow.shutdown()


async def test_prompts_arriving_while_slots_are_busy_batch_up():
    gate = asyncio.Event()

    async def first_waits(request, body):
        if body["prompt"] == "first":
            await gate.wait()
        return None

    fake = FakeOpenAI(first_waits)
    ai = backend(fake, max_concurrency=1)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(text):
        return text

    first = ask("first")
    await fake.until_active(1)
    later = []
    for i in range(5):  # one per loop turn: each would be its own request otherwise
        later.append(ask(f"later {i}"))
        await asyncio.sleep(0)
    gate.set()
    assert await first == "echo:first"
    assert await asyncio.gather(*later) == [f"echo:later {i}" for i in range(5)]
    assert [b["prompt"] for b in fake.completions()][1] == [f"later {i}" for i in range(5)]
    assert len(fake.completions()) == 2
    await flow.shutdown()


@pytest.mark.parametrize(("window", "requests"), [(0.0, 4), (0.05, 1)])
async def test_batch_window_collects_prompts_of_later_loop_turns(window, requests):
    fake = FakeOpenAI()
    ai = backend(fake, batch_window=window)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = []
    for i in range(4):
        futures.append(ask(i))
        await asyncio.sleep(0.001)  # prompts become ready a moment apart
    assert await asyncio.gather(*futures) == [f"echo:p{i}" for i in range(4)]
    assert len(fake.completions()) == requests
    await flow.shutdown()


async def test_generation_options_from_defaults_decorator_and_description():
    fake = FakeOpenAI()
    ai = backend(fake, max_tokens=8, temperature=0.0, stop="\n", seed=1)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def plain(i):
        return f"plain {i}"

    @flow.prompt_task(backend="ai", max_tokens=99, stop=["END", "STOP"])
    def custom():
        return "custom"

    got = await asyncio.gather(
        plain(1), plain(2), custom(), plain(3, task_description={"temperature": 0.7})
    )
    assert got == ["echo:plain 1", "echo:plain 2", "echo:custom", "echo:plain 3"]
    bodies = {json.dumps(b["prompt"]): b for b in fake.completions()}
    assert len(bodies) == 3  # one request per distinct set of options
    both = bodies[json.dumps(["plain 1", "plain 2"])]
    assert (both["max_tokens"], both["temperature"], both["stop"], both["seed"]) == (
        8,
        0.0,
        ["\n"],
        1,
    )
    mine = bodies[json.dumps("custom")]
    assert (mine["max_tokens"], mine["stop"], mine["temperature"]) == (99, ["END", "STOP"], 0.0)
    assert bodies[json.dumps("plain 3")]["temperature"] == 0.7
    await flow.shutdown()


async def test_chat_endpoint_sends_system_prompt_and_runs_requests_concurrently():
    release = asyncio.Event()
    fake = FakeOpenAI(held_until(release))
    ai = backend(fake, endpoint="chat", max_concurrency=3, system="Be brief.")
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"q{i}"

    @flow.prompt_task(backend="ai", system="Be verbose.")
    def verbose():
        return "why"

    futures = [ask(i) for i in range(4)] + [verbose()]
    await fake.until_active(3)
    release.set()
    out = await asyncio.gather(*futures)
    assert out[:4] == [f"chat:Be brief.|q{i}" for i in range(4)]
    assert out[4] == "chat:Be verbose.|why"
    assert fake.bodies[0]["messages"][-1] == {"role": "user", "content": "q0"}
    assert fake.max_active == 3 and len(fake.bodies) == 5
    await flow.shutdown()


@pytest.mark.parametrize(
    ("stream", "usage", "shared"),
    [(True, "own", False), (True, "request", True), (False, "", True)],
)
async def test_usage_is_recorded_per_task(stream, usage, shared):
    async def styled(request, body):
        return echo(body, usage) if usage else None

    fake = FakeOpenAI(styled)
    ai = backend(fake, stream=stream)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = [ask(i) for i in range(3)]
    assert await asyncio.gather(*futures) == ["echo:p0", "echo:p1", "echo:p2"]
    await asyncio.sleep(0)  # request-level usage lands when the stream ends
    assert fake.bodies[0].get("stream", False) is stream
    for f in futures:
        u = ai.usage[f.key]
        assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (7, 3, 10)
        assert (u.batch_size, u.shared, u.finish_reason, u.attempts) == (3, shared, "stop", 1)
        assert u.latency >= 0
    assert (ai.stats.requests, ai.stats.prompts) == (1, 3)
    await flow.shutdown()


async def test_each_streamed_answer_is_delivered_when_it_finishes():
    gate = asyncio.Event()

    async def slow_second(request, body):
        events = stream_events(body, [f"echo:{p}" for p in body["prompt"]])

        async def content():
            for e in events:
                if (
                    e
                    and e["choices"]
                    and e["choices"][0]["index"] == 0
                    and e["choices"][0]["finish_reason"]
                ):
                    await gate.wait()  # prompt 1 finished; prompt 0 is still generating
                yield sse([e])[: -len(b"data: [DONE]\n\n")]
            yield b"data: [DONE]\n\n"

        return httpx.Response(200, content=content(), headers={"content-type": "text/event-stream"})

    fake = FakeOpenAI(slow_second)
    ai = backend(fake)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    first, second = ask(0), ask(1)
    assert await second == "echo:p1"  # while the request still runs
    assert not first.done()
    gate.set()
    assert await first == "echo:p0"
    assert len(fake.bodies) == 1
    await flow.shutdown()


async def test_a_stream_cut_midway_resends_only_the_unfinished_prompts():
    async def cut_once(request, body):
        if len(fake.bodies) > 1:
            return None
        events = stream_events(body, [f"echo:{p}" for p in body["prompt"]])
        done_1 = [e for e in events if e and e["choices"] and e["choices"][0]["index"] == 1]

        async def content():
            yield sse(done_1)[: -len(b"data: [DONE]\n\n")]  # prompt 1 completes
            raise httpx.ReadError("connection reset by peer", request=request)

        return httpx.Response(200, content=content(), headers={"content-type": "text/event-stream"})

    fake = FakeOpenAI(cut_once)
    ai = backend(fake, retries=1)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = [ask(i) for i in range(3)]
    assert await asyncio.gather(*futures) == ["echo:p0", "echo:p1", "echo:p2"]
    assert fake.bodies[0]["prompt"] == ["p0", "p1", "p2"]
    assert fake.bodies[1]["prompt"] == ["p0", "p2"]  # p1 was answered before the cut
    assert ai.usage[futures[0].key].attempts == 2 and ai.usage[futures[1].key].attempts == 1
    await flow.shutdown()


async def test_an_error_event_in_the_stream_is_reported():
    async def broken(request, body):
        content = sse([None, {"error": {"code": 500, "message": "kv cache full"}}])
        return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})

    fake = FakeOpenAI(broken)
    ai = backend(fake, retries=1)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "x"

    with pytest.raises(InferenceServerError, match="kv cache full.*after 2 attempt"):
        await ask()
    await flow.shutdown()


# -- failures ---------------------------------------------------------------------------


def failing(statuses: list[int], headers: dict[str, str] | None = None) -> Behaviour:
    """Answer with each status in turn, then normally."""
    left = list(statuses)

    async def behave(request, body):
        if left:
            status = left.pop(0)
            return httpx.Response(status, text=f"overloaded ({status})", headers=headers)
        return None

    return behave


async def test_429_and_5xx_are_retried_with_backoff_then_succeed():
    fake = FakeOpenAI(failing([429, 503, 500], headers={"Retry-After": "0"}))
    ai = backend(fake, retries=3)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "hello"

    fut = ask()
    assert await fut == "echo:hello"
    assert len(fake.bodies) == 4 and ai.stats.retries == 3
    assert ai.usage[fut.key].attempts == 4
    await flow.shutdown()


async def test_exhausted_retries_name_server_status_and_body():
    fake = FakeOpenAI(failing([503] * 10))
    ai = backend(fake, retries=2)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "hello"

    @flow.function_task
    def after(text):
        return text

    head = ask()
    tail = after(head)
    with pytest.raises(InferenceServerError) as info:
        await head
    msg = str(info.value)
    assert f"{URL}/completions" in msg and "503" in msg and "overloaded (503)" in msg
    assert "after 3 attempt(s)" in msg
    assert (info.value.status, info.value.server) == (503, URL)
    with pytest.raises(DependencyFailureError):
        await tail
    assert len(fake.bodies) == 3
    await flow.shutdown()


async def test_backoff_grows_exponentially():
    times: list[float] = []

    async def fail(request, body):
        times.append(time.perf_counter())
        return httpx.Response(502, text="bad gateway")

    fake = FakeOpenAI(fail)
    ai = backend(fake, retries=3, backoff=0.02)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "x"

    with pytest.raises(InferenceServerError, match="502"):
        await ask()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # base 0.02 s doubling, jittered to 50-100 %: >= 0.01, 0.02, 0.04
    assert [g >= lo for g, lo in zip(gaps, (0.01, 0.02, 0.04), strict=True)] == [True] * 3
    await flow.shutdown()


async def test_connection_errors_are_retried_then_reported():
    calls = 0

    async def refuse(request, body):
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        if calls == 3:
            return None
        raise httpx.ReadError("connection reset by peer", request=request)

    fake = FakeOpenAI(refuse)
    ai = backend(fake, retries=2)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(text):
        return text

    assert await ask("ok") == "echo:ok"  # two refusals, then an answer
    with pytest.raises(InferenceServerError, match=r"cannot reach .*ReadError") as info:
        await ask("lost")
    assert info.value.status is None and URL in str(info.value)
    await flow.shutdown()


async def test_a_dropped_kept_alive_connection_is_retried_at_once():
    calls = 0

    async def drop_first(request, body):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return None

    fake = FakeOpenAI(drop_first)
    ai = backend(fake, backoff=30.0)  # a backoff would blow the test's timeout
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "x"

    assert await ask() == "echo:x"
    assert ai.stats.retries == 1
    await flow.shutdown()


async def test_client_errors_are_not_retried():
    async def reject(request, body):
        return httpx.Response(400, json={"error": {"message": "max_tokens too large"}})

    fake = FakeOpenAI(reject)
    ai = backend(fake, retries=5)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "x"

    with pytest.raises(InferenceServerError, match="HTTP 400 Bad Request.*max_tokens too large"):
        await ask()
    assert len(fake.bodies) == 1
    await flow.shutdown()


async def test_malformed_answers_fail_clearly():
    async def odd(request, body):
        if body["prompt"] == "html":
            return httpx.Response(200, text="<html>proxy login</html>")
        prompts = body["prompt"]
        choices = [{"index": 0, "text": "only the first"}]  # prompt #1 has no answer
        return httpx.Response(200, json={"choices": choices}) if isinstance(prompts, list) else None

    fake = FakeOpenAI(odd)
    ai = backend(fake)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(text):
        return text

    with pytest.raises(InferenceServerError, match="not with an OpenAI completion.*proxy login"):
        await ask("html")
    a, b = ask("a"), ask("b")
    assert await a == "only the first"
    with pytest.raises(Exception, match="no choice for prompt #1"):
        await b
    await flow.shutdown()


async def test_request_timeout_fails_only_that_requests_tasks():
    async def stall(request, body):
        if body["max_tokens"] == 1000:
            await asyncio.Event().wait()  # never answers
        return None

    fake = FakeOpenAI(stall)
    ai = backend(fake, timeout=0.2)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai", max_tokens=1000)
    def slow():
        return "slow"

    @flow.prompt_task(backend="ai", max_tokens=5)
    def quick():
        return "quick"

    s, q = slow(), quick()
    assert await q == "echo:quick"
    with pytest.raises(TaskTimeoutError, match=r"timeout=0.2 s"):
        await s
    assert fake.aborted == 1  # the stalled request was abandoned, not left open
    await flow.shutdown()


# -- cancellation -----------------------------------------------------------------------


async def test_cancel_closes_the_in_flight_request():
    started = asyncio.Event()

    async def stall(request, body):
        started.set()
        await asyncio.Event().wait()

    fake = FakeOpenAI(stall)
    ai = backend(fake)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask():
        return "long"

    fut = ask()
    await started.wait()
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    while fake.aborted == 0:
        await asyncio.sleep(0)
    assert fake.active == 0 and not ai._inflight
    await flow.shutdown()


async def test_cancelling_one_task_of_a_batch_keeps_the_others():
    gate, started = asyncio.Event(), asyncio.Event()
    fake = FakeOpenAI(held_until(gate, started))
    ai = backend(fake)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = [ask(i) for i in range(3)]
    await started.wait()
    futures[1].cancel()
    await asyncio.sleep(0)  # let the backend hear of it
    gate.set()
    assert await futures[0] == "echo:p0" and await futures[2] == "echo:p2"
    assert futures[1].cancelled() and fake.aborted == 0
    assert futures[1].key not in ai.usage
    await flow.shutdown()


async def test_per_task_timeout_in_a_batch_fails_only_that_task():
    gate = asyncio.Event()
    fake = FakeOpenAI(held_until(gate))
    ai = backend(fake)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    impatient = ask(0, task_description={"timeout": 0.1})
    patient = ask(1)
    with pytest.raises(TaskTimeoutError):
        await impatient
    gate.set()
    assert await patient == "echo:p1"
    assert len(fake.bodies) == 1
    await flow.shutdown()


async def test_shutdown_cancels_queued_and_running_prompts_without_hanging():
    async def stall(request, body):
        await asyncio.Event().wait()

    fake = FakeOpenAI(stall)
    ai = backend(fake, max_concurrency=1, max_batch=2)
    flow = await engine(ai)

    @flow.prompt_task(backend="ai")
    def ask(i):
        return f"p{i}"

    futures = [ask(i) for i in range(5)]
    await fake.until_active(1)
    await flow.shutdown()
    assert all(f.cancelled() for f in futures)
    assert fake.aborted == 1 and ai.state() == "SHUTDOWN"


# -- start-up and bad input -------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_server_at_start_is_a_fast_clear_error():
    port = closed_port()
    ai = OpenAIInferenceBackend(base_url=f"http://127.0.0.1:{port}", connect_timeout=1)
    t0 = time.perf_counter()
    with pytest.raises(
        InferenceServerError, match=rf"cannot reach .*127.0.0.1:{port}/v1.*base_url="
    ):
        await WorkflowEngine.create(backend=ai)
    assert time.perf_counter() - t0 < 3


async def test_start_checks_api_key_and_model():
    async def auth(request):
        if request.headers.get("authorization") != "Bearer sk-right":
            return httpx.Response(401, json={"error": "invalid api key"})
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": []})
        return echo(json.loads(request.content))

    bad = OpenAIInferenceBackend(
        base_url=URL, api_key="sk-wrong", transport=httpx.MockTransport(auth)
    )
    with pytest.raises(InferenceServerError, match="401.*api_key="):
        await WorkflowEngine.create(backend=bad)
    nameless = OpenAIInferenceBackend(
        base_url=URL, api_key="sk-right", transport=httpx.MockTransport(auth)
    )
    with pytest.raises(InferenceServerError, match="model="):
        await WorkflowEngine.create(backend=nameless)
    named = OpenAIInferenceBackend(
        base_url=URL, api_key="sk-right", model="mine", transport=httpx.MockTransport(auth)
    )
    flow = await WorkflowEngine.create(backend=named)

    @flow.prompt_task
    def ask():
        return "hi"

    assert await ask() == "echo:hi"
    await flow.shutdown()


async def test_function_tasks_routed_to_the_ai_backend_fail_clearly():
    fake = FakeOpenAI()
    flow = await engine(backend(fake))

    @flow.function_task(backend="ai")
    def compute():
        return 1

    with pytest.raises(ConfigurationError, match="'compute' is a function task.*prompt tasks only"):
        await compute()

    @flow.function_task
    def fine():
        return 2

    assert await fine() == 2
    await flow.shutdown()


async def test_system_prompt_needs_the_chat_endpoint():
    with pytest.raises(ConfigurationError, match="system= needs endpoint='chat'"):
        OpenAIInferenceBackend(base_url=URL, system="Be brief.")
    fake = FakeOpenAI()
    flow = await engine(backend(fake))

    @flow.prompt_task(backend="ai", system="Be brief.")
    def ask():
        return "x"

    with pytest.raises(ConfigurationError, match="endpoint='chat'"):
        await ask()
    await flow.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"endpoint": "embeddings"}, ConfigurationError, "endpoint= must be 'completions'"),
        ({"max_batch": 0}, ConfigurationError, "max_batch= must be an int >= 1"),
        ({"max_concurrency": 1.5}, ConfigurationError, "max_concurrency= must be an int"),
        ({"timeout": 0}, ConfigurationError, "timeout= must be a number of seconds > 0"),
        ({"batch_window": -1}, ConfigurationError, "batch_window= must be .* >= 0"),
        ({"max_token": 5}, UnknownOptionError, "did you mean 'max_tokens'"),
        ({"temperature": "hot"}, ConfigurationError, "temperature= must be a number"),
        ({"base_url": "localhost:8000"}, ConfigurationError, "base_url= must be the server's"),
    ],
)
def test_bad_backend_arguments(kwargs, error, match):
    kwargs.setdefault("base_url", URL)
    with pytest.raises(error, match=match):
        OpenAIInferenceBackend(**kwargs)


def test_url_passed_as_name_and_url_forms():
    with pytest.raises(ConfigurationError, match="base_url='http://h:1/v1'"):
        OpenAIInferenceBackend("http://h:1/v1", base_url=URL)
    for given in ("http://h:1", "http://h:1/", "http://h:1/v1/", "http://h:1/v1/completions"):
        assert OpenAIInferenceBackend(base_url=given).base_url == "http://h:1/v1"


# -- task options (spec and decorators) -------------------------------------------------


async def test_generation_options_are_validated_at_decoration_and_call():
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    with pytest.raises(UnknownOptionError, match="did you mean 'max_tokens'"):
        flow.prompt_task(max_token=5)
    with pytest.raises(
        ConfigurationError, match="max_tokens= is a generation option of @prompt_task"
    ):
        flow.function_task(max_tokens=5)
    with pytest.raises(ConfigurationError, match="max_tokens= must be an int > 0"):
        flow.prompt_task(max_tokens=0)
    with pytest.raises(ConfigurationError, match="stop= must be a non-empty string"):
        flow.prompt_task(stop=[""])

    @flow.prompt_task(max_tokens=4)
    def ask():
        return "x"

    with pytest.raises(ConfigurationError, match="temperature= must be a number >= 0"):
        ask(task_description={"temperature": -1})
    await flow.shutdown()


async def test_resources_option_merges_with_the_task_description():
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task(resources={"GPU": 1, "CPU": 2})
    def train():
        return 1

    fut = train(task_description={"resources": {"CPU": 8}})
    assert dict(flow.graph[fut.key].options.resources) == {"GPU": 1, "CPU": 8}
    plain = train()
    assert dict(flow.graph[plain.key].options.resources) == {"GPU": 1, "CPU": 2}
    with pytest.raises(ConfigurationError, match=r"resources= must map resource names"):
        flow.function_task(resources={"GPU": -1})
    with pytest.raises(ConfigurationError, match=r"task_description\['resources'\]"):
        train(task_description={"resources": 4})
    await asyncio.gather(fut, plain)
    await flow.shutdown()

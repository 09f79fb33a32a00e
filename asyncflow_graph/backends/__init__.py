"""Backends, imported lazily by name so optional dependencies cost nothing
until used (``from asyncflow_graph.backends import LocalExecutionBackend``)."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Backend, BackendContext, Command, Remote, Reporter, Work

__all__ = [
    "AsyncFlowBackendAdapter",
    "Backend",
    "BackendContext",
    "Command",
    "DaskExecutionBackend",
    "LocalExecutionBackend",
    "NoopExecutionBackend",
    "OpenAIInferenceBackend",
    "Remote",
    "Reporter",
    "Work",
]

_LAZY = {
    "LocalExecutionBackend": ".local",
    "NoopExecutionBackend": ".noop",
    "AsyncFlowBackendAdapter": ".adapter",
    "DaskExecutionBackend": ".dask",
    "OpenAIInferenceBackend": ".openai",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)

"""Backends, imported lazily by name so optional dependencies cost nothing
until used (``from asyncflow_graph.backends import LocalExecutionBackend``)."""

from __future__ import annotations

from .._lazy import lazy_attributes
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
    "StateMapper",
    "Work",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "LocalExecutionBackend": ".local",
        "NoopExecutionBackend": ".noop",
        "StateMapper": ".asyncflow_api",
        "AsyncFlowBackendAdapter": ".adapter",
        "DaskExecutionBackend": ".dask",
        "OpenAIInferenceBackend": ".openai",
    },
)

"""Backends, imported lazily by name so optional dependencies cost nothing
until used (``from asyncflow_graph.backends import LocalExecutionBackend``)."""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..protocol import Backend, BackendContext, Command, Remote, Reporter, ThreadSafeReporter, Work

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
    "ThreadSafeReporter",
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

"""asyncflow_graph: a lazy task-graph compiler that speaks RADICAL AsyncFlow's API.

Decorated calls build an immutable task graph; a compiler fuses and partitions it
by backend; an event-driven executor runs it on local pools, Dask or inference
servers and resolves asyncio futures.
"""

from __future__ import annotations

from .backends.local import LocalExecutionBackend
from .backends.noop import NoopExecutionBackend
from .compiler import Plan
from .data import InputFile, OutputFile
from .engine import WorkflowEngine
from .errors import DependencyFailureError
from .graph import Graph
from .script import Delayed, compile, compute, executable_task, function_task, prompt_task
from .version import __version__

__all__ = [
    "Delayed",
    "DependencyFailureError",
    "Graph",
    "InputFile",
    "LocalExecutionBackend",
    "NoopExecutionBackend",
    "OutputFile",
    "Plan",
    "WorkflowEngine",
    "__version__",
    "compile",
    "compute",
    "executable_task",
    "function_task",
    "prompt_task",
]

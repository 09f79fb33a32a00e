"""The native backend protocol; it lives in :mod:`asyncflow_graph.protocol` (a leaf
module the compiler, the executor and the backends share). This module keeps the
old import path working."""

from __future__ import annotations

from ..protocol import (
    Backend,
    BackendContext,
    Command,
    Outcome,
    Remote,
    Reporter,
    ThreadSafeReporter,
    Work,
)

__all__ = [
    "Backend",
    "BackendContext",
    "Command",
    "Outcome",
    "Remote",
    "Reporter",
    "ThreadSafeReporter",
    "Work",
]

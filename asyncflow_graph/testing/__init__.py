"""The backend conformance suite, for authors of backends.

Subclass :class:`BackendConformance` in a test module of your project, say how to
build your backend and what it can do, and pytest runs the tests every built-in
backend passes (see ``docs/backends.md``)::

    from asyncflow_graph.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        runs_in_process = True

        async def make_backends(self, tmp_path):
            return [MyBackend(name=self.backend_name)]

The suite needs ``pytest`` and ``pytest-asyncio``; ``import asyncflow_graph``
never imports them. :class:`BackendConformance` is imported when first read, so
a remote worker that unpickles a task body of :mod:`asyncflow_graph.testing.tasks`
needs no pytest either.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .tasks import (
    DUMMY_OUTPUT,
    ConformanceError,
    announce_pid,
    flaky_once,
    gated,
    raise_conformance,
    wait_for_path,
)

if TYPE_CHECKING:
    from .base import ConformanceBase
    from .conformance import BackendConformance

__all__ = [
    "DUMMY_OUTPUT",
    "BackendConformance",
    "ConformanceBase",
    "ConformanceError",
    "announce_pid",
    "flaky_once",
    "gated",
    "raise_conformance",
    "wait_for_path",
]


def __getattr__(name: str) -> Any:
    if name not in ("BackendConformance", "ConformanceBase"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    suite = [f"{__name__}.base", f"{__name__}.conformance"]
    if not any(m in sys.modules for m in suite):
        import pytest

        # The tests' asserts are rewritten as in a test module, so a failing
        # conformance test shows the values it compared (under pytest only).
        pytest.register_assert_rewrite(*suite)
    from . import base, conformance

    return conformance.BackendConformance if name == "BackendConformance" else base.ConformanceBase

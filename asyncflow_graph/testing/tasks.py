"""Task bodies and helpers of the conformance suite.

Module-level, so they ship *by reference* to forked pools and remote workers (a
worker imports ``asyncflow_graph.testing.tasks``, which needs neither pytest nor
the suite). Synchronisation across processes and machines is through files,
polled with a deadline: the only channel every backend shares with the test.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

__all__ = [
    "DUMMY_OUTPUT",
    "ConformanceError",
    "announce_pid",
    "flaky_once",
    "gated",
    "raise_conformance",
    "wait_for_path",
]

#: what a dry-run backend (``NoopExecutionBackend``) answers for every non-prompt task
DUMMY_OUTPUT = "Dummy Output"


class ConformanceError(Exception):
    """A user exception with extra attributes: its type and fields must survive the
    trip through any backend (threads, processes, remote workers)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


async def gated(started: str, gate: str, cancelled_marker: str = "", limit: float = 30.0) -> str:
    """Announce the start (a file holding this process's pid), then wait until
    ``gate`` exists. Async so that it also runs on backends that call functions on
    the event loop; ``limit`` bounds how long a worker nobody releases stays busy.
    When cancelled, touch ``cancelled_marker`` (if given)."""
    announce_pid(started)
    deadline = time.monotonic() + limit
    try:
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} was never opened")
            await asyncio.sleep(0.005)
    except asyncio.CancelledError:
        if cancelled_marker:
            Path(cancelled_marker).touch()
        raise
    return "released"


def flaky_once(counter: str) -> int:
    """Fail on the first attempt, succeed on the next ones; the attempt count lives
    in a file, so it works whatever process or machine runs each attempt."""
    with open(counter, "a") as f:
        f.write("x")
    attempts = os.path.getsize(counter)
    if attempts == 1:
        raise ConformanceError("first attempt fails", 1)
    return attempts


def raise_conformance(code: int) -> None:
    """Raise a :class:`ConformanceError` with ``code``."""
    raise ConformanceError("typed failure", code)


def announce_pid(path: str) -> None:
    """Write this process's pid to ``path`` atomically: a reader polling for the
    file (often in another process) never sees it created but still empty."""
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(str(os.getpid()))
    os.replace(tmp, path)


async def wait_for_path(path: Path, timeout: float) -> None:
    """Poll for ``path`` with a deadline (the writer may be another process)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.01)

"""Pickling large values to a process pool without pausing the event loop.

A process pool's feeder thread pickles each call; a 100 MB argument pickled into
memory is several 100 MB copies made while holding the GIL, and the event loop's
thread waits for the GIL meanwhile (0.13 s measured for 100 MB). Here the pickle
goes to a :class:`Spill` instead: small pickles stay in memory, a large one goes to
a temporary file. The C pickler hands every payload of 64 KB or more straight to
``write()`` without copying it, and ``os.write`` releases the GIL, so the loop runs
while a large value streams to the file. The worker reads the file and removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Any

__all__ = ["SPILL_BYTES", "Spill", "Spilled", "dump", "load"]

log = logging.getLogger("asyncflow_graph")

#: pickles up to this size travel in memory; larger ones through a temporary file
SPILL_BYTES = 4 * 2**20


class Spill:
    """A write-only file for a pickler: memory up to ``limit`` bytes, then a file."""

    __slots__ = ("_buf", "_fd", "_filed", "_limit", "path")

    def __init__(self, limit: int = SPILL_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._fd = -1
        self._filed = 0  # bytes of whole write() calls safely in the file
        self.path: str | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._fd < 0 and len(self._buf) + len(view) <= self._limit:
            self._buf += view
            return len(view)
        try:
            if self._fd < 0:
                self._fd, self.path = tempfile.mkstemp(prefix="asyncflow-value-")
                self._write(memoryview(self._buf))
                self._filed, self._buf = len(self._buf), bytearray()
            self._write(view)
            self._filed += len(view)
        except OSError as exc:  # no room in the temporary directory: memory after all
            self._back_to_memory(exc)
            self._buf += view
        return len(view)

    def _write(self, view: memoryview) -> None:
        while view:
            view = view[os.write(self._fd, view) :]  # releases the GIL while it writes

    def _back_to_memory(self, exc: OSError) -> None:
        log.warning(
            "could not spill a large value to the temporary directory %s (%s): it is "
            "pickled in memory instead, which pauses the event loop while it is copied; "
            "set TMPDIR to a disk with room",
            tempfile.gettempdir(),
            exc,
        )
        if self._fd >= 0:
            if not self._buf:  # the file holds what came before this write
                os.lseek(self._fd, 0, os.SEEK_SET)
                while len(self._buf) < self._filed:
                    chunk = os.read(self._fd, self._filed - len(self._buf))
                    if not chunk:
                        break
                    self._buf += chunk
            os.close(self._fd)
            self._fd = -1
            Spilled(b"", self.path).discard()
        self.path = None
        self._limit = sys.maxsize

    def close(self) -> Spilled:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        return Spilled(bytes(self._buf), self.path)


class Spilled:
    """A pickle in memory, or the path of the file it was spilled to. Picklable
    (a few bytes when spilled): it is what travels through the pool's pipes."""

    __slots__ = ("blob", "path")

    def __init__(self, blob: bytes, path: str | None) -> None:
        self.blob = blob
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Spilled, (self.blob, self.path))

    def discard(self) -> None:
        """Remove the file (a call that never reached a worker); safe to repeat."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def dump(obj: Any, limit: int = SPILL_BYTES) -> Spilled:
    """``obj`` pickled with cloudpickle; to a temporary file once over ``limit``."""
    import cloudpickle

    spill = Spill(limit)
    try:
        cloudpickle.dump(obj, spill)
    except BaseException:
        spill.close().discard()
        raise
    return spill.close()


def load(spilled: Spilled) -> Any:
    """The object back; a spilled file is removed once read."""
    import cloudpickle

    if spilled.path is None:
        return cloudpickle.loads(spilled.blob)
    try:
        with open(spilled.path, "rb") as f:
            return cloudpickle.load(f)
    finally:
        spilled.discard()

"""Stopping a unit that already left the loop: keys whose body must not start.

A thread or a worker process cannot be interrupted, but a chain it runs asks
before each call whether the call's key was stopped (:func:`~.helpers.run_chain`'s
``stop``), and so does a work still queued in the pool before its first call. So a
task cancelled while the task before it runs, or while its unit waits in the
pool's queue, never runs its body: only a body that already started runs on.

Threads and loop tasks share a set per running work; worker processes see a flag
file per stopped key in one directory per backend (a ``stat`` per call: nothing
next to pickling a call to another process).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..spec import Node

__all__ = ["FlagDirectory", "Stops"]


class FlagDirectory:
    """``key in flags``: a worker process asks whether ``key`` was stopped.
    Picklable (a path), so it travels with the calls."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __contains__(self, key: object) -> bool:
        return os.path.exists(self._file(str(key)))

    def add(self, key: str) -> None:
        with open(self._file(key), "wb"):
            pass

    def _file(self, key: str) -> str:
        from urllib.parse import quote  # a key may hold any character but "/"

        return os.path.join(self.path, quote(key, safe=""))

    def __reduce__(self) -> tuple[type[FlagDirectory], tuple[str]]:
        return (FlagDirectory, (self.path,))


class Stops:
    """The stopped keys of one backend's running works."""

    __slots__ = ("_flags", "_sets")

    def __init__(self) -> None:
        self._sets: dict[str, set[str]] = {}  # head key -> keys stopped in that work
        self._flags: FlagDirectory | None = None

    def open(self, head: str) -> set[str]:
        """The set ``head``'s work checks before each call (threads, loop tasks)."""
        stopped = self._sets[head] = set()
        return stopped

    def flags(self) -> FlagDirectory:
        """The flag directory worker processes check (made on first use)."""
        if self._flags is None:
            import tempfile

            self._flags = FlagDirectory(tempfile.mkdtemp(prefix="asyncflow-stops-"))
        return self._flags

    def stop(self, nodes: Sequence[Node], head: str | None = None) -> None:
        """No key of ``nodes`` (of the work headed by ``head``: the first's) may start
        from now on."""
        keys = [n.key for n in nodes]
        stopped = self._sets.get(head or keys[0])
        if stopped is not None:
            stopped.update(keys)
        if self._flags is not None:
            for k in keys:
                self._flags.add(k)

    def done(self, head: str, stopped: object) -> None:
        """``head``'s work ended here (a thread may still hold its set: it keeps
        it). Only this attempt's set: a retry of the same key may have its own."""
        if self._sets.get(head) is stopped:
            del self._sets[head]

    def close(self) -> None:
        if self._flags is not None:
            import shutil

            shutil.rmtree(self._flags.path, ignore_errors=True)
            self._flags = None

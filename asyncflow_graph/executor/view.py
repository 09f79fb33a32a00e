"""The read-only window on a run that observers, drawings and tools get
(:class:`~asyncflow_graph.executor.events.RunView`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..protocol import TaskState, Work
from .state import RunState

__all__ = ["ExecutorView"]


class ExecutorView:
    __slots__ = ("_state", "_works")

    def __init__(self, state: RunState, works: Mapping[str, Work]) -> None:
        self._state = state
        self._works = works  # key -> the work a backend holds for it (the driver's)

    @property
    def durations(self) -> Mapping[str, float]:
        return self._state.durations

    def outcome(self, key: str) -> TaskState | None:
        return self._state.outcome(key)

    def error(self, key: str) -> BaseException | None:
        return self._state.failures.get(key)

    def live_counts(self) -> dict[str, tuple[int, int]]:
        # Snapshots first (one C-level copy each): a metric reader's thread may
        # call this while the loop thread changes the dicts.
        works = list(self._works.values())
        state = self._state
        started = state.started()
        job_of, is_open = state.job_of, state.is_open
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        seen: set[int] = set()
        for w in works:
            if id(w) in seen:  # a graph unit is there once per key
                continue
            seen.add(id(w))
            n = sum(1 for k in w.unit.keys if is_open(k) and k not in started)
            queued[w.unit.backend] = queued.get(w.unit.backend, 0) + n
        for k in started:
            job = job_of(k)
            if job is not None:
                running[job.unit.backend] = running.get(job.unit.backend, 0) + 1
        return {b: (queued.get(b, 0), running.get(b, 0)) for b in {*queued, *running}}

"""What the run state tells its driver to do: typed instructions.

:class:`~asyncflow_graph.executor.state.RunState` takes events (a batch compiled, a
key running, done, failed, cancelled, timed out) and answers with a sequence of these
values; the driver carries them out in order and decides nothing itself. Each is a
small immutable NamedTuple: one allocation, and none at all on the common path of a
finished key that makes nothing ready (the state answers :data:`NOTHING`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..protocol import Unit

__all__ = [
    "NOTHING",
    "Ended",
    "Instruction",
    "Job",
    "Ready",
    "RetryAfter",
    "StopTail",
    "StopWork",
]

#: a Job's phases (not task states: a job is a unit's run, see TaskState for keys)
WAITING, RUNNING, ENDED = 0, 1, 2


class Job:
    """Run-time record of one unit (the only per-unit allocation).

    ``remaining`` counts what the job waits for: while WAITING, its inputs without
    a value; from RUNNING on, its keys that have not ended (ENDED at zero)."""

    __slots__ = ("attempts", "remaining", "status", "unit")

    def __init__(self, unit: Unit, remaining: int) -> None:
        self.unit = unit
        self.remaining = remaining
        self.status = WAITING
        self.attempts = 0

    def __repr__(self) -> str:
        return f"Job({self.unit.keys[0]!r}, remaining={self.remaining}, status={self.status})"


class Ready(NamedTuple):
    """Submit these jobs: every input of each has a value. ``later``: on the next
    loop turn (what survived a split graph unit; the ending that split it is
    still being carried out)."""

    jobs: list[Job]
    later: bool = False


class Ended(NamedTuple):
    """These keys ended (failed or cancelled; the state holds which and why):
    resolve their futures, tell observers, stop whatever still runs them."""

    keys: list[str]


class RetryAfter(NamedTuple):
    """``key`` failed with ``error`` and has retries left: submit ``job`` (its
    unit again from ``key``) after ``delay`` seconds."""

    job: Job
    delay: float
    key: str
    error: BaseException


class StopWork(NamedTuple):
    """Cancel, on its backend, the work running ``key`` (a timeout)."""

    key: str


class StopTail(NamedTuple):
    """The running chain headed by ``head`` lost ``key`` and the keys after it (the
    keys before run on): its backend must start none of them."""

    head: str
    key: str


Instruction = Ready | Ended | RetryAfter | StopWork | StopTail

#: the answer when there is nothing to do (shared: no allocation)
NOTHING: Sequence[Instruction] = ()

"""The executor's pure state machine: events in, instructions out.

``RunState`` knows every compiled unit, which keys each one still waits for, and
how every key ended. It never touches a future, a backend or the event loop: the
driver feeds it events (``done``, ``fail``, ``cancel``) and acts on what it returns
(jobs now ready to submit; keys that ended as a consequence).

Invariants (checked by the property tests):
* every key added is in exactly one of: open (``_job_of``), ``values``,
  ``failures``, ``cancelled`` — and once it leaves "open" it never changes again;
* a job is returned as ready exactly once, and only when every input has a value;
* a key fails iff it raised or a key it depends on failed; it is cancelled iff it
  or an ancestor was cancelled (and no ancestor failed first);
* nothing recurses: a 10,000-long chain fails or cancels iteratively.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

from ..compiler.plan import Unit
from ..errors import DependencyFailureError
from ..spec import Node

__all__ = ["Job", "RunState"]

WAITING, RUNNING, ENDED = 0, 1, 2
GRAPH_DONE = -2  # _end's index for a graph-unit key whose dependents were already found


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


class RunState:
    __slots__ = (
        "_job_of",
        "_waiters",
        "cancelled",
        "durations",
        "failures",
        "nodes",
        "ready_after_end",
        "values",
    )

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.values: dict[str, Any] = {}
        self.failures: dict[str, BaseException] = {}
        self.cancelled: dict[str, str | None] = {}
        #: seconds from RUNNING to the end, for the keys whose backend reported RUNNING
        self.durations: dict[str, float] = {}
        self._job_of: dict[str, Job] = {}  # open key -> the job that computes it
        self._waiters: dict[str, list[Job]] = {}  # open key -> jobs waiting for it
        #: jobs made ready by ending keys (the rest of a split graph unit); the
        #: driver takes them after every fail/cancel
        self.ready_after_end: list[Job] = []

    # -- queries ----------------------------------------------------------------------

    def is_open(self, key: str) -> bool:
        return key in self._job_of

    def knows(self, key: str) -> bool:
        return (
            key in self._job_of
            or key in self.values
            or key in self.failures
            or key in self.cancelled
        )

    def job_of(self, key: str) -> Job | None:
        return self._job_of.get(key)

    @property
    def open_count(self) -> int:
        return len(self._job_of)

    def open_keys(self) -> list[str]:
        return list(self._job_of)

    # -- events -----------------------------------------------------------------------

    def add(
        self,
        nodes: Mapping[str, Node],
        units: Iterable[Unit],
        errors: Mapping[str, BaseException],
        cancelled: Mapping[str, Any] = {},
    ) -> tuple[list[Job], list[str]]:
        """Register a compiled batch. Returns jobs ready now and keys that ended
        now (compile-time errors and their dependents, or inputs that had failed)."""
        self.nodes.update(nodes)
        ready: list[Job] = []
        doomed: list[Job] = []
        job_of, waiters, values = self._job_of, self._waiters, self.values
        for unit in units:
            job = Job(unit, 0)
            for k in unit.keys:
                job_of[k] = job
            for d in unit.inputs:
                if d in values:
                    continue
                if d in job_of:
                    job.remaining += 1
                    w = waiters.get(d)
                    if w is None:
                        waiters[d] = [job]
                    else:
                        w.append(job)
                elif d in self.failures or d in self.cancelled:
                    doomed.append(job)
                    break
                else:
                    raise KeyError(f"task {unit.keys[0]!r} depends on unknown task {d!r}")
            else:
                head = unit.keys[0]
                if job.remaining == 0 and head not in errors and head not in cancelled:
                    job.status = RUNNING
                    job.remaining = len(unit.keys)
                    ready.append(job)
        ended: list[str] = []
        for key, exc in errors.items():
            ended += self.fail(key, exc)
        for key, msg in cancelled.items():
            ended += self.cancel(key, msg)
        for job in doomed:
            if job.status is WAITING:
                ended += self._end_from_inputs(job)
        return ready, ended

    def done(self, key: str, value: Any) -> list[Job]:
        """``key`` produced ``value``. Returns the jobs that became ready."""
        job = self._job_of.pop(key, None)
        if job is None:  # ended already (cancelled, timed out): the late result is dropped
            return []
        self.values[key] = value
        job.remaining -= 1
        if job.remaining == 0:
            job.status = ENDED
        waiting = self._waiters.pop(key, None)
        if not waiting:
            return []
        ready = []
        for j in waiting:
            j.remaining -= 1
            if j.remaining == 0 and j.status == WAITING:
                j.status = RUNNING
                j.remaining = len(j.unit.keys)
                ready.append(j)
        return ready

    def fail(self, key: str, exc: BaseException) -> list[str]:
        """``key`` raised ``exc``. Returns every key that ended as a consequence."""
        return self._end(key, exc, failed=True)

    def cancel(self, key: str, msg: str | None = None) -> list[str]:
        """``key`` was cancelled. Returns every key cancelled as a consequence."""
        return self._end(key, msg, failed=False)

    def retry(self, job: Job, from_key: str) -> Job:
        """A fresh job running ``job``'s unit again from ``from_key`` (a chain) or
        its keys that have not ended (a graph unit)."""
        unit = job.unit
        if unit.graph:
            keys = tuple(k for k in unit.keys if self._job_of.get(k) is job)
            inputs = self._graph_inputs(keys)
        else:
            i = unit.keys.index(from_key)
            keys = unit.keys[i:]
            inputs = unit.inputs if i == 0 else (unit.keys[i - 1],)
        again = Job(Unit(unit.backend, keys, inputs, unit.graph), len(keys))
        again.attempts = job.attempts + 1
        again.status = RUNNING
        for k in keys:
            self._job_of[k] = again
        return again

    # -- propagation --------------------------------------------------------------------

    def _end(self, key: str, outcome: Any, *, failed: bool) -> list[str]:
        ended: list[str] = []
        # (key, outcome, index of key in its unit or -1): the index rides along so a
        # long fused chain ends in linear time.
        stack: list[tuple[str, Any, int]] = [(key, outcome, -1)]
        while stack:
            k, out, i = stack.pop()
            job = self._job_of.pop(k, None)
            if job is None:
                continue
            if failed:
                self.failures[k] = out
            else:
                self.cancelled[k] = out
            ended.append(k)
            if job.status != WAITING:
                job.remaining -= 1
                if job.remaining == 0:
                    job.status = ENDED
            keys = job.unit.keys
            if job.unit.graph:
                if i != GRAPH_DONE:  # i == GRAPH_DONE: found by an earlier scan
                    stack.extend(self._graph_dependents(job, k, out, failed))
            elif k != keys[-1]:  # the rest of a fused chain depends on k
                i = keys.index(k) if i < 0 else i
                nxt = keys[i + 1]
                err = self._dependency_error(nxt, out) if failed else out
                stack.append((nxt, err, i + 1))
            for j in self._waiters.pop(k, ()):
                if j.status == WAITING and j.unit.graph:
                    stack.extend(self._split_graph(j, out, failed))
                elif j.status == WAITING:
                    j.status = ENDED
                    head = j.unit.keys[0]
                    err = self._dependency_error(head, out) if failed else out
                    stack.append((head, err, 0))
        return ended

    def _graph_dependents(
        self, job: Job, key: str, out: Any, failed: bool
    ) -> list[tuple[str, Any, int]]:
        """``_end`` entries for the open keys of ``job``'s graph unit that depend on
        ``key``, transitively, found in one forward scan (keys are topological)."""
        keys, job_of = job.unit.keys, self._job_of
        return self._doom(
            (k for k in keys[keys.index(key) + 1 :] if job_of.get(k) is job), {key: out}, failed
        )

    def _doom(
        self,
        keys: Iterable[str],
        outcome: dict[str, Any],
        failed: bool,
        survivors: list[str] | None = None,
    ) -> list[tuple[str, Any, int]]:
        """Keys (topological) that depend on a key in ``outcome`` end too; each
        failure names its own failed dependencies, as in a chain. Others go to
        ``survivors`` when given."""
        nodes = self.nodes
        doomed: list[tuple[str, Any, int]] = []
        for k in keys:
            hit = next((d for d in nodes[k].deps if d in outcome), None)
            if hit is None:
                if survivors is not None:
                    survivors.append(k)
                continue
            cause = outcome[hit]
            outcome[k] = self._dependency_error(k, cause, outcome) if failed else cause
            doomed.append((k, outcome[k], GRAPH_DONE))
        return doomed

    def _split_graph(self, job: Job, out: Any, failed: bool) -> list[tuple[str, Any, int]]:
        """A waiting graph unit lost inputs: end exactly the keys that depend on an
        ended input, and let the others wait on as a new graph unit. Returns the
        doomed keys as ``_end`` stack entries."""
        job.status = ENDED
        values, job_of = self.values, self._job_of
        ended = {
            d: self.failures.get(d, self.cancelled.get(d, out))
            for d in job.unit.inputs
            if d not in values and d not in job_of
        }
        survivors: list[str] = []
        doomed = self._doom(job.unit.keys, ended, failed, survivors)
        if survivors:
            inputs = self._graph_inputs(survivors)
            again = Job(Unit(job.unit.backend, tuple(survivors), inputs, True), 0)
            again.attempts = job.attempts
            for k in survivors:
                job_of[k] = again
            for d in inputs:
                if d not in values:
                    again.remaining += 1
                    self._waiters.setdefault(d, []).append(again)
            if again.remaining == 0:
                again.status = RUNNING
                again.remaining = len(survivors)
                self.ready_after_end.append(again)
        return doomed

    def _graph_inputs(self, keys: Sequence[str]) -> tuple[str, ...]:
        """The dependencies from outside ``keys`` of a graph unit made of them, in order."""
        inside = set(keys)
        nodes = self.nodes
        return tuple(dict.fromkeys(d for k in keys for d in nodes[k].deps if d not in inside))

    def _end_from_inputs(self, job: Job) -> list[str]:
        """End a job added after one of its inputs had already ended."""
        if job.unit.graph:
            d = next(d for d in job.unit.inputs if d in self.failures or d in self.cancelled)
            failed = d in self.failures
            out = self.failures[d] if failed else self.cancelled[d]
            ended: list[str] = []
            for k, err, _ in self._split_graph(job, out, failed):
                ended += self._end(k, err, failed=failed)
            return ended
        job.status = ENDED
        head = job.unit.keys[0]
        failed_inputs = [d for d in job.unit.inputs if d in self.failures]
        if failed_inputs:
            return self.fail(head, self._dependency_error(head, self.failures[failed_inputs[0]]))
        msg = next(self.cancelled[d] for d in job.unit.inputs if d in self.cancelled)
        return self.cancel(head, msg)

    def _dependency_error(
        self, key: str, cause: BaseException, failing: Container[str] = ()
    ) -> DependencyFailureError:
        node = self.nodes[key]
        failed = [
            self.nodes[d].name
            for d in dict.fromkeys(node.deps)
            if d in self.failures or d in failing
        ]
        return DependencyFailureError(
            f"Cannot execute '{node.name}' due to dependency failure",
            failed_dependencies=failed,
            root_cause=cause,
        )

"""The executor's pure state machine: events in, typed instructions out.

``RunState`` knows every compiled unit, which keys each one still waits for, how
every key ended, when each started, and which block created which task. It never
touches a future, a backend or the event loop: the driver feeds it events
(``add``, ``running``, ``done``, ``fail``, ``cancel``, ``time_out``) and carries out
the :mod:`~asyncflow_graph.executor.instructions` it returns. The decisions live
here: whether a failure is retried and after how long, which timeout governs a
unit, which members end with their block.

Invariants (checked by the property tests):
* every key added is in exactly one of: open (``_job_of``), ``values``,
  ``failures``, ``cancelled`` — and once it leaves "open" it never changes again;
* a job is returned as ready exactly once, and only when every input has a value;
* a key fails iff it raised or a key it depends on failed; it is cancelled iff it
  or an ancestor was cancelled (and no ancestor failed first), or its block ended;
* ``_started_at`` holds exactly the keys running now; a key's duration is in
  ``durations`` before the instruction that ends it is returned;
* nothing recurses: a 10,000-long chain fails or cancels iteratively.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any

from ..errors import DependencyFailureError, TaskTimeoutError
from ..protocol import TaskState, Unit
from ..spec import EMPTY_MAPPING, Node
from .instructions import (
    ENDED,
    NOTHING,
    RUNNING,
    WAITING,
    Ended,
    Instruction,
    Job,
    Ready,
    RetryAfter,
    StopTail,
    StopWork,
)

__all__ = ["Job", "RunState"]  # Job: re-exported from .instructions

GRAPH_DONE = -2  # _end's index for a graph-unit key whose dependents were already found


class RunState:
    __slots__ = (
        "_clock",
        "_job_of",
        "_members",
        "_started_at",
        "_survivors",
        "_tails",
        "_waiters",
        "backend_retries",
        "cancelled",
        "closing",
        "durations",
        "failures",
        "nodes",
        "values",
    )

    def __init__(self, clock: Callable[[], float] = perf_counter) -> None:
        self.nodes: dict[str, Node] = {}
        self.values: dict[str, Any] = {}
        self.failures: dict[str, BaseException] = {}
        self.cancelled: dict[str, str | None] = {}
        #: seconds from RUNNING to the end, for the keys whose backend reported RUNNING
        self.durations: dict[str, float] = {}
        #: backends that apply ``retries=`` themselves (failures there are final)
        self.backend_retries: set[str] = set()
        #: set when the engine shuts down: nothing is retried any more
        self.closing = False
        self._clock = clock
        self._job_of: dict[str, Job] = {}  # open key -> the job that computes it
        self._waiters: dict[str, list[Job]] = {}  # open key -> jobs waiting for it
        self._started_at: dict[str, float] = {}  # running key -> clock() at RUNNING
        self._members: dict[str, list[str]] = {}  # block key -> keys its body created
        #: what survived a split graph unit and is ready: returned with the ending
        self._survivors: list[Job] = []
        #: running chains that lost a tail: (head, first key lost), returned with the ending
        self._tails: list[StopTail] = []

    # -- queries ----------------------------------------------------------------------

    @property
    def open_jobs(self) -> Mapping[str, Job]:
        """Key -> the job computing it, for every key not ended yet (read-only use)."""
        return self._job_of

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

    def outcome(self, key: str) -> TaskState | None:
        """How ``key`` stands now; None for a key this state never saw."""
        if key in self._job_of:
            return TaskState.RUNNING if key in self._started_at else TaskState.PENDING
        if key in self.values:
            return TaskState.DONE
        if key in self.failures:
            return TaskState.FAILED
        if key in self.cancelled:
            return TaskState.CANCELLED
        return None

    def started(self) -> set[str]:
        """The keys running now (a snapshot, safe to read from another thread)."""
        return set(self._started_at)

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
        cancelled: Mapping[str, Any] = EMPTY_MAPPING,
    ) -> Sequence[Instruction]:
        """Register a compiled batch. Returns the jobs ready now and the keys that
        ended now (compile-time errors and their dependents, keys cancelled before
        they were compiled, inputs that had failed, members of ended blocks)."""
        late = self._adopt_members(nodes)
        if late:
            cancelled = {**cancelled, **late}
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
            ended += self._end(key, exc, failed=True)
        for key, msg in cancelled.items():
            ended += self._end(key, msg, failed=False)
        for job in doomed:
            if job.status is WAITING:
                ended += self._end_from_inputs(job)
        if not ended:
            return (Ready(ready),) if ready else NOTHING
        # Ended keys first (and what survived a split graph unit, next turn), then
        # what is ready now.
        answer = list(self._ended(ended))
        if ready:
            answer.append(Ready(ready))
        return answer

    def _adopt_members(self, nodes: Mapping[str, Node]) -> dict[str, Any]:
        """Record which block created each node. A node compiled after its block
        ended (it waited in the intake's backlog) ends as the block's other
        members did: cancelled. Returns those late ones."""
        late: dict[str, Any] = {}
        for key, node in nodes.items():
            block = node.parent
            if block is None:
                continue
            if block in self.cancelled or block in self.failures:
                late[key] = self.cancelled.get(block)
            else:
                self._members.setdefault(block, []).append(key)
        return late

    def running(self, key: str) -> None:
        """The backend started ``key`` (or a block body began). A late report for
        a key that already ended (it may come from another thread) is dropped."""
        if key in self._job_of:
            self._started_at[key] = self._clock()

    def done(self, key: str, value: Any) -> Ready | None:
        """``key`` produced ``value``. Returns the jobs that became ready, if any
        (its only possible instruction: a plain value on the hot path)."""
        job = self._job_of.pop(key, None)
        if job is None:  # ended already (cancelled, timed out): the late result is dropped
            return None
        self.values[key] = value
        if self._started_at:
            self._record_duration(key)
        if self._members:
            self._members.pop(key, None)
        job.remaining -= 1
        if job.remaining == 0:
            job.status = ENDED
        waiting = self._waiters.pop(key, None)
        if not waiting:
            return None
        ready = []
        for j in waiting:
            j.remaining -= 1
            if j.remaining == 0 and j.status == WAITING:
                j.status = RUNNING
                j.remaining = len(j.unit.keys)
                ready.append(j)
        return Ready(ready) if ready else None

    def fail(self, key: str, exc: BaseException) -> Sequence[Instruction]:
        """``key`` raised ``exc``: retried if it has retries left (and its backend
        does not retry by itself), else it ends with every dependent."""
        job = self._job_of.get(key)
        if job is None:
            return NOTHING
        retries = self.nodes[key].options.retries
        if (
            job.attempts < retries
            and not self.closing
            and job.unit.backend not in self.backend_retries
        ):
            self._started_at.pop(key, None)  # queued again until the backend restarts it
            again = self.retry(job, key)
            delay = self.nodes[key].options.retry_delay * (2**job.attempts)
            return (RetryAfter(again, delay, key, exc),)
        return self._ended(self._end(key, exc, failed=True))

    def cancel(self, key: str, msg: str | None = None) -> Sequence[Instruction]:
        """``key`` was cancelled. Returns every key cancelled as a consequence."""
        return self._ended(self._end(key, msg, failed=False))

    def time_out(self, job: Job) -> Sequence[Instruction]:
        """``job``'s timer fired: when the same job still runs its head, stop its
        work and fail the head with :class:`TaskTimeoutError` (retried as any
        failure)."""
        head = job.unit.keys[0]
        if self._job_of.get(head) is not job:
            return NOTHING
        node = self.nodes[head]
        timeout = node.options.timeout
        error = TaskTimeoutError(f"task {node.name!r} did not finish within {timeout} s")
        return (StopWork(head), *self.fail(head, error))

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

    def _record_duration(self, key: str) -> None:
        t0 = self._started_at.pop(key, None)
        if t0 is not None:
            self.durations[key] = self._clock() - t0

    def _ended(self, ended: list[str]) -> Sequence[Instruction]:
        """The instructions for keys that ended by failure or cancel: blocks take
        their open members with them (cancelled), a split graph unit's survivors
        run on."""
        if not ended:
            return NOTHING
        if self._started_at:
            for k in ended:
                self._record_duration(k)
        if self._members:
            ended = self._end_members(ended)
        answer = _answer(self._take_survivors(), ended, later=True)
        if self._tails:
            answer, self._tails = (*answer, *self._tails), []
        return answer

    def _end_members(self, ended: list[str]) -> list[str]:
        out: list[str] = []
        todo = list(reversed(ended))
        while todo:
            k = todo.pop()
            out.append(k)
            members = self._members.pop(k, None)
            if not members:
                continue
            msg = self.cancelled.get(k)
            for m in members:
                more = self._end(m, msg, failed=False)
                if self._started_at:
                    for e in more:
                        self._record_duration(e)
                todo.extend(reversed(more))
        return out

    # -- propagation --------------------------------------------------------------------

    def _end(self, key: str, outcome: Any, *, failed: bool) -> list[str]:
        ended: list[str] = []
        waiting: dict[int, Job] = {}  # jobs not dispatched yet that lost keys here
        tails: set[int] = set()  # running chains that lost keys here
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
            if job.status == WAITING:
                waiting[id(job)] = job
            else:
                job.remaining -= 1
                if job.remaining == 0:
                    job.status = ENDED
                head = job.unit.keys[0]
                if k != head and not job.unit.graph and id(job) not in tails:
                    tails.add(id(job))  # the first key of its tail to end here
                    if head not in self.failures and head not in self.cancelled:
                        self._tails.append(StopTail(head, k))  # the head part runs on
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
        if waiting:
            self._trim(waiting.values())
        return ended

    def _trim(self, jobs: Iterable[Job]) -> None:
        """Jobs still waiting for their inputs lost keys: they run without them
        when ready (a chain keeps its head part, a graph unit its other keys), and
        not at all when nothing is left. An ended key's body never runs."""
        job_of = self._job_of
        for job in jobs:
            if job.status != WAITING:
                continue
            keys = tuple(k for k in job.unit.keys if job_of.get(k) is job)
            if not keys:
                job.status = ENDED
            elif len(keys) < len(job.unit.keys):
                job.unit = job.unit._replace(keys=keys)

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
                self._survivors.append(again)
        return doomed

    def _take_survivors(self) -> list[Job]:
        if not self._survivors:
            return []
        jobs, self._survivors = self._survivors, []
        return jobs

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
            cause = self.failures[failed_inputs[0]]
            return self._end(head, self._dependency_error(head, cause), failed=True)
        msg = next(self.cancelled[d] for d in job.unit.inputs if d in self.cancelled)
        return self._end(head, msg, failed=False)

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


def _answer(ready: list[Job], ended: list[str], *, later: bool = False) -> Sequence[Instruction]:
    """Ended keys first (their futures resolve before dependents are submitted)."""
    if ready and ended:
        return (Ended(ended), Ready(ready, later))
    if ended:
        return (Ended(ended),)
    if ready:
        return (Ready(ready, later),)
    return NOTHING

"""Groups of tasks as one Dask task: the worker side.

The compiler's coarsen pass cuts a Dask graph unit into groups (``Unit.groups``): a
fused chain, or a chunk of independent tasks. Each group becomes **one** Dask task,
:func:`run_group`, which runs the group's calls in order on one worker and keeps a
:class:`GroupResult` holding every task's own value or exception. Before it returns,
the worker tells the client the group's :data:`Summary` (a Dask event: which tasks
failed and with what, how long each function ran, how large the results are), so the
client gets no values: each task is reported done with ``Remote(backend,
Element(group, i))`` (``dask_refs``), a later Dask task takes the group's future and
picks its element on the worker (:func:`pick`), and values come here only when a
handle is awaited. (Were the event lost, :func:`group_summary` asks the worker for it.)

Per-task semantics inside a group: a task that raises fails alone (its in-group
dependents are skipped; the executor ends them), ``retries=`` re-runs that task
alone, in place; a cancelled task is skipped when the cancel reaches the workers
before it starts (:func:`cancel_in_groups`, broadcast with ``client.run``).

Imports only the spec, the protocol and the error tree: workers import this module.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import Any, NamedTuple

from ..spec import Call, call
from . import dask_progress
from .dask_progress import portable

__all__ = [
    "CANCELLED",
    "FAILED",
    "OK",
    "SKIPPED",
    "GroupResult",
    "GroupSpec",
    "Summary",
    "cancel_in_groups",
    "group_summary",
    "pick",
    "pick_many",
    "run_group",
]

log = logging.getLogger("asyncflow_graph")

#: a task's state in a group: not run yet, done, raised, skipped (an input is
#: missing: it failed, was skipped or cancelled), cancelled before it started
NOT_RUN, OK, FAILED, SKIPPED, CANCELLED = 0, dask_progress.OK, dask_progress.FAILED, 3, 4

#: Dask key of a running group -> our keys cancelled in it (this worker process)
_CANCELLED: dict[str, set[str]] = {}

#: what a worker tells of a group that ended (msgpack-able: it travels as a Dask
#: event): "state" (bytes, one per task; None when every task is OK), "errors"
#: ([index, pickled exception]), "work" ([first index, seconds, result bytes, tasks]
#: per function), "size" (bytes of every result together)
Summary = dict[str, Any]

#: a group whose results together are larger than this is fetched element by
#: element (one small Dask task each), not as a whole
WHOLE_FETCH_MAX_BYTES = 4_000_000


# --------------------------------------------------------------------------- worker side


class GroupSpec:
    """What a worker needs to run one group, pickled once on the client into bytes
    the scheduler never looks into (it unpickles graphs: a thousand calls would cost it
    a thousand objects). Inside, by columns and each function once."""

    __slots__ = ("name", "payload")

    def __init__(
        self,
        name: str,
        calls: Sequence[Call],
        refs: dict[str, tuple[int, int]],
        consts: dict[str, Any],
        retries: tuple[int, ...],
        topic: str,
    ) -> None:
        import cloudpickle

        self.name = name  # the group's Dask key: where cancels are looked up
        funcs: list[Any] = []
        index: dict[int, int] = {}
        which = []
        for c in calls:
            i = index.get(id(c.func))
            if i is None:
                i = index[id(c.func)] = len(funcs)
                funcs.append(c.func)
            which.append(i)
        kwargs = [c.kwargs for c in calls] if any(c.kwargs for c in calls) else None
        deep = [c.deep for c in calls] if any(c.deep for c in calls) else None
        columns = (
            [c.key for c in calls], funcs, which, [c.args for c in calls],
            kwargs, [c.deps for c in calls], deep,
        )  # fmt: skip
        # refs: input key -> (position among the Dask inputs, element or -1); consts:
        # inputs computed elsewhere; topic: where progress is told ("": nowhere)
        self.payload = cloudpickle.dumps((columns, refs, consts, retries, topic))

    def __getstate__(self) -> tuple[str, bytes]:
        return (self.name, self.payload)

    def __setstate__(self, state: tuple[str, bytes]) -> None:
        self.name, self.payload = state

    def open(self) -> _Opened:
        """Worker side: the calls and the rest, unpickled."""
        columns, refs, consts, retries, topic = pickle.loads(self.payload)
        keys, funcs, which, args, kwargs, deps, deep = columns
        n = len(keys)
        kwargs = kwargs or [{}] * n
        deep = deep or [False] * n
        calls = tuple(
            Call(keys[i], funcs[which[i]], args[i], kwargs[i], deps[i], deep[i]) for i in range(n)
        )
        return _Opened(calls, refs, consts, retries, topic)


class _Opened(NamedTuple):
    calls: tuple[Call, ...]
    refs: dict[str, tuple[int, int]]
    consts: dict[str, Any]
    retries: tuple[int, ...]
    topic: str


class GroupResult:
    """A group's outcome, kept on the worker: every task's value (None unless OK),
    its state, its exception and its run time."""

    __slots__ = ("durations", "errors", "state", "summary", "values")

    def __init__(self, n: int) -> None:
        self.values: list[Any] = [None] * n
        self.state = bytearray(n)
        self.errors: dict[int, BaseException] = {}
        self.durations = [0.0] * n
        self.summary: Summary = {}

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.values, bytes(self.state), self.errors, self.durations, self.summary)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.values, st, self.errors, self.durations, self.summary = state
        self.state = bytearray(st)


def pick(value: Any, index: int) -> Any:
    """Element ``index`` of a group's result (``index < 0``: ``value`` itself, the
    result of a single Dask task); raises when that task produced no value."""
    if index < 0:
        return value
    if value.state[index] != OK:
        raise LookupError(f"input {index} of its group produced no value")
    return value.values[index]


def run_group(spec: GroupSpec, inputs: list[Any]) -> GroupResult:
    """Worker side: run the group's calls in order, each with its own outcome."""
    opened = spec.open()
    calls = opened.calls
    out = GroupResult(len(calls))
    known = dict(opened.consts)
    missing: set[str] = set()
    for key, (pos, index) in opened.refs.items():
        value = inputs[pos]
        if index >= 0 and value.state[index] != OK:
            missing.add(key)
        else:
            known[key] = value if index < 0 else value.values[index]
    runner: asyncio.Runner | None = None
    progress = dask_progress.begin(spec.name, opened.topic, out)
    try:
        for i, c in enumerate(calls):
            if progress is not None:
                progress.index, progress.since = i, perf_counter()
            cancelled = _CANCELLED.get(spec.name)
            if cancelled and c.key in cancelled:
                out.state[i] = CANCELLED
                missing.add(c.key)
            elif missing and any(d in missing for d in c.deps):
                out.state[i] = SKIPPED
                missing.add(c.key)
            else:
                t0 = perf_counter()
                ok, value, runner = _attempts(c, known, opened.retries[i], runner)
                out.durations[i] = perf_counter() - t0
                if ok:
                    out.state[i] = OK
                    out.values[i] = known[c.key] = value
                else:
                    out.state[i] = FAILED
                    out.errors[i] = value
                    missing.add(c.key)
    finally:
        _CANCELLED.pop(spec.name, None)
        if runner is not None:
            runner.close()
    out.summary = _summary(out, calls)
    if progress is not None:
        dask_progress.end(progress, out.summary)
    return out


def _summary(out: GroupResult, calls: Sequence[Call]) -> Summary:
    """What the client learns of a group: exceptions, and per function how long it
    ran and how large its results are (calls of one function share one function
    object: it was unpickled once)."""
    import cloudpickle
    from dask.sizeof import sizeof

    work: dict[int, list[Any]] = {}  # id(func) -> [first index, seconds, bytes, tasks]
    total = 0
    for i, c in enumerate(calls):
        state = out.state[i]
        if state not in (OK, FAILED):
            continue
        size = sizeof(out.values[i]) if state == OK else 0
        total += size
        acc = work.get(id(c.func))
        if acc is None:
            work[id(c.func)] = [i, out.durations[i], size, 1]
        else:
            acc[1] += out.durations[i]
            acc[2] += size
            acc[3] += 1
    all_ok = out.state.count(OK) == len(calls)
    return {
        "state": None if all_ok else bytes(out.state),
        "errors": [[i, cloudpickle.dumps(portable(e))] for i, e in out.errors.items()],
        "work": list(work.values()),
        "size": total,
    }


def _attempts(
    c: Call, known: Mapping[str, Any], retries: int, runner: asyncio.Runner | None
) -> tuple[bool, Any, asyncio.Runner | None]:
    """Run one call, again up to ``retries`` times while it raises. Coroutine
    functions share one event loop per group (a loop per call costs more than a
    small task)."""
    for attempt in range(retries + 1):
        try:
            value = call(c, known)
            if asyncio.iscoroutine(value):
                if runner is None:
                    runner = asyncio.Runner()
                value = runner.run(value)
        except Exception as exc:
            if attempt < retries:
                log.warning("task %s failed (%r); retry %d of %d", c.key, exc, attempt + 1, retries)
                continue
            return False, exc, runner
        return True, value, runner
    raise AssertionError("unreachable")  # pragma: no cover


def pick_many(result: GroupResult, indexes: Sequence[int]) -> dict[int, Any]:
    """Worker side: the elements ``indexes`` of a group's result."""
    return {i: pick(result, i) for i in indexes}


def group_summary(result: GroupResult) -> Summary:
    """Worker side: a group's summary, for a client that missed the event."""
    return result.summary


def cancel_in_groups(marks: Mapping[str, Sequence[str]]) -> int:
    """Worker side (through ``client.run``): tasks of running or queued groups that
    must not start. Returns how many groups this worker process marked."""
    for group, keys in marks.items():
        _CANCELLED.setdefault(group, set()).update(keys)
    return len(marks)

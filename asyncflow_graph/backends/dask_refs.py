"""The client side of groups on Dask: refs to a task's value inside a group, wiring
a Dask task's inputs, fetching values, and the per-function duration model.

A group (``dask_chunks.run_group``) keeps every task's value on its worker; this
process holds a :class:`GroupRef` (the group's Dask future and what was learnt of it)
and, per task, an :class:`Element` of it, reported as ``Remote(backend, Element)``.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..protocol import Outcome, Remote
from ..spec import Node
from .dask_chunks import (
    FAILED,
    OK,
    WHOLE_FETCH_MAX_BYTES,
    GroupResult,
    GroupSpec,
    Summary,
    pick,
    pick_many,
    run_group,
)

__all__ = [
    "MODELS",
    "DurationModel",
    "Element",
    "GroupRef",
    "fetch_refs",
    "group_task",
    "model_for",
    "outcomes_of",
    "wire",
]


class GroupRef:
    """A group sent to Dask: its future, its keys, and what was learnt of it."""

    __slots__ = (
        "early",
        "fids",
        "flat",
        "future",
        "key",
        "keys",
        "open",
        "result",
        "running",
        "sizes",
        "summary",
    )

    def __init__(self, key: str, keys: tuple[str, ...], fids: list[str], flat: bool) -> None:
        self.key = key  # its Dask key
        self.future: Any = None  # the GroupResult's Dask future: holds the values remotely
        self.keys = keys
        self.open = len(keys)  # keys neither reported nor cancelled yet
        self.fids = fids  # function id of each task (duration estimates)
        self.flat = flat  # no task of it takes another's value: every value is a result
        self.summary: Summary | None = None  # told by its worker when it ended
        self.sizes = 0  # bytes of the values together, once the status is in
        self.result: GroupResult | None = None  # fetched here (small groups only)
        self.running = -1  # the task its worker last told runs long (dask_progress)
        #: keys told ended while the group ran: key -> (ok, value or exception)
        self.early: dict[str, tuple[bool, Any]] = {}

    def __repr__(self) -> str:
        return f"<group of {len(self.keys)} [{self.keys[0]}...]>"


class Element:
    """The ref of a task's value inside a group (``Remote(backend, Element)``)."""

    __slots__ = ("group", "index")

    def __init__(self, group: GroupRef, index: int) -> None:
        self.group = group
        self.index = index

    def __repr__(self) -> str:
        return f"Element({self.group!r}, {self.index})"


async def fetch_refs(client: Any, refs: Sequence[Any]) -> list[tuple[bool, Any]]:
    """The values behind refs (Dask futures and :class:`Element` s), in one gather. A
    group of independent tasks whose results together are small is fetched whole,
    once; from any other group only the elements asked for travel (picked on the
    worker: a chain's intermediate results stay there)."""
    whole: dict[str, Any] = {}  # name -> future to gather
    wanted: dict[int, list[int]] = {}  # id(group) -> indexes asked for
    groups: dict[int, GroupRef] = {}
    for ref in refs:
        if type(ref) is not Element:
            whole[ref.key] = ref
            continue
        g = ref.group
        if g.result is not None:
            continue
        if g.flat and g.sizes <= WHOLE_FETCH_MAX_BYTES:
            whole[g.future.key] = g.future
        else:
            groups[id(g)] = g
            wanted.setdefault(id(g), []).append(ref.index)
    for gid, indexes in wanted.items():
        g = groups[gid]
        whole[f"@{g.key}"] = client.submit(pick_many, g.future, indexes, pure=False)
    got = await _gather(client, whole)
    out: list[tuple[bool, Any]] = []
    for ref in refs:
        if type(ref) is not Element:
            out.append(got[ref.key])
            continue
        g = ref.group
        if g.result is None and g.future.key in got:
            ok, value = got[g.future.key]
            if not ok:
                out.append((False, value))
                continue
            g.result = value
        if g.result is None:
            ok, value = got[f"@{g.key}"]
            out.append((ok, value[ref.index] if ok else value))
            continue
        try:
            out.append((True, pick(g.result, ref.index)))
        except LookupError as exc:
            out.append((False, exc))
    return out


async def _gather(client: Any, futures: Mapping[str, Any]) -> dict[str, tuple[bool, Any]]:
    if not futures:
        return {}
    names = list(futures)
    try:
        values = await client.gather([futures[n] for n in names])
        return {n: (True, v) for n, v in zip(names, values, strict=True)}
    except (Exception, asyncio.CancelledError):  # one failed or was lost: ask one by one
        if _cancelling():
            raise
    out: dict[str, tuple[bool, Any]] = {}
    for n in names:
        try:
            out[n] = (True, await futures[n].result())
        except (Exception, asyncio.CancelledError) as exc:
            if _cancelling():
                raise
            out[n] = (False, exc)  # a cancelled value is that value's failure
    return out


def _cancelling() -> bool:
    """Whether the task running this is being cancelled (its own cancellation,
    as opposed to a Dask future cancelled on the cluster)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def wire(
    deps: Iterable[str], inputs: Mapping[str, Any], local: Mapping[str, tuple[str, int]], name: str
) -> tuple[list[str], list[Any], list[int], dict[str, Any]]:
    """How a Dask task gets each of ``deps``: ``names`` (our keys), ``refs`` (Dask keys
    of this graph, or Dask futures of earlier ones) and ``picks`` (the element of a
    group's result, -1 for a whole value), or embedded in ``consts`` (values
    computed elsewhere). ``local``: our key -> (Dask key, element) in this graph."""
    names: list[str] = []
    refs: list[Any] = []
    picks: list[int] = []
    consts: dict[str, Any] = {}
    for d in deps:
        where = local.get(d)
        if where is not None:
            names.append(d)
            refs.append(where[0])
            picks.append(where[1])
            continue
        value = inputs[d]
        if type(value) is Remote and value.backend == name:
            ref = value.ref
            names.append(d)
            if type(ref) is Element:
                refs.append(ref.group.future)
                picks.append(ref.index)
            else:
                refs.append(ref)
                picks.append(-1)
        else:
            consts[d] = value
    return names, refs, picks, consts


def group_task(
    dask_key: str,
    nodes: Sequence[Node],
    inputs: Mapping[str, Any],
    local: Mapping[str, tuple[str, int]],
    name: str,
    topic: str = "",
) -> tuple[Any, ...]:
    """The Dask task of one group (``local`` already maps its own keys)."""
    inside = {n.key for n in nodes}
    outside = dict.fromkeys(d for n in nodes for d in n.deps if d not in inside)
    names, refs, picks, consts = wire(outside, inputs, local, name)
    position: dict[Any, int] = {}  # one Dask input per distinct group or key
    unique: list[Any] = []
    spec_refs: dict[str, tuple[int, int]] = {}
    for key, ref, p in zip(names, refs, picks, strict=True):
        ident = ref if isinstance(ref, str) else ref.key
        pos = position.get(ident)
        if pos is None:
            pos = position[ident] = len(unique)
            unique.append(ref)
        spec_refs[key] = (pos, p)
    calls = [n.to_call() for n in nodes]
    retries = tuple(n.options.retries for n in nodes)
    return (run_group, GroupSpec(dask_key, calls, spec_refs, consts, retries, topic), unique)


def outcomes_of(group: GroupRef, summary: Summary, name: str) -> list[Outcome]:
    """The outcomes to report for a group that ended: done tasks with their element,
    failed ones with their exception; skipped and cancelled tasks are ended by the
    executor (their inputs failed or were cancelled)."""

    group.sizes = summary["size"]
    state = summary["state"]
    keys = group.keys
    if state is None:
        return [(k, True, Remote(name, Element(group, i))) for i, k in enumerate(keys)]
    errors = dict(summary["errors"])
    out: list[Outcome] = []
    for i, key in enumerate(keys):
        s = state[i]
        if s == OK:
            out.append((key, True, Remote(name, Element(group, i))))
        elif s == FAILED:
            out.append((key, False, pickle.loads(errors[i])))
    return out


class DurationModel:
    """Measured seconds per call and bytes per result, per function, from the groups'
    statuses (worker clocks). One model per cluster in this process, shared by
    every backend on it, as Dask's scheduler keeps its per-prefix durations."""

    __slots__ = ("_ids", "durations", "sizes")

    #: weight of a group's mean in the running estimate
    ALPHA = 0.5

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}
        self.sizes: dict[str, float] = {}
        self._ids: dict[Any, str] = {}

    def fid(self, func: Any) -> str:
        from ..protocol import function_id

        try:
            found = self._ids.get(func)
        except TypeError:  # an unhashable callable object
            return function_id(func)
        if found is None:
            if len(self._ids) > 4096:
                self._ids.clear()
            found = self._ids[func] = function_id(func)
        return found

    def learn(self, group: GroupRef, summary: Summary) -> None:
        a = self.ALPHA
        for first, secs, size, n in summary["work"]:
            fid = group.fids[first]
            old = self.durations.get(fid)
            self.durations[fid] = secs / n if old is None else (1 - a) * old + a * secs / n
            olds = self.sizes.get(fid)
            self.sizes[fid] = size / n if olds is None else (1 - a) * olds + a * size / n


#: scheduler address -> the duration model of that cluster (this process)
MODELS: dict[str, DurationModel] = {}


def model_for(address: str) -> DurationModel:
    model = MODELS.get(address)
    if model is None:
        model = MODELS[address] = DurationModel()
    return model

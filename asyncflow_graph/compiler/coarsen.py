"""The coarsen pass: fewer, larger remote tasks for a scheduler that charges per task.

Dask's scheduler costs about a millisecond per task, and its docs ask for tasks of
10-100 ms. For a backend that gives :class:`~asyncflow_graph.protocol.Coarsening`
hints, each graph unit (or fused chain) of its partitions is regrouped:

1. **chains**: a task whose only in-unit dependency has no other in-unit dependent
   joins that dependency's chain; a chain becomes one remote task;
2. **chunks**: chains on the same level of the unit (so independent of each other)
   with the same ``resources=`` are packed into chunks, one remote task each.

Sizes come from measured per-function durations. A chunk or chain aims at
``target`` seconds of work (more on a level with so much work that the scheduler's
cost per task would outweigh it: :func:`chunk_seconds`, at most ``max_chunk``), so
no task waits longer than that behind others of its chunk; a level with work for
several workers is cut into a multiple of ``workers`` chunks of equal estimated
work, so no worker idles while a chunk holds tasks back;
a task estimated at ``long`` seconds or more, or with large results, is never grouped.
A function never measured is spread over ``workers x UNKNOWN_SPREAD`` chunks of at
most ``UNKNOWN_MAX_TASKS`` tasks. Every task keeps its own key, value, error and
handle: the backend reports each one on its own.

Pure: partition, nodes and hints in, partition and explanation out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import ceil, sqrt
from typing import Any

from ..protocol import Coarsening, Unit, function_id
from ..spec import Node
from .plan import CoarsenNote, Partition

__all__ = ["UNKNOWN_MAX_TASKS", "UNKNOWN_SPREAD", "coarsen", "coarsen_unit"]

#: chunks per worker for a function with no measured duration
UNKNOWN_SPREAD = 4
#: tasks per chunk (or fused chain) at most for a function with no measured duration
UNKNOWN_MAX_TASKS = 256
#: seconds of work per worker below which a level is not cut for balance (the
#: remote tasks would cost more than the parallelism gains)
MIN_SPLIT_WORK = 0.01


def coarsen(
    part: Partition,
    nodes: Mapping[str, Node],
    hints: Coarsening,
    shares: Callable[[Node], bool],
) -> tuple[Partition, dict[str, CoarsenNote]]:
    """``part`` with its graph units and fused chains regrouped (see the module).

    ``shares``: the compiler's one fusion rule (``shares_submission`` with this
    plan's errors); a fused chain is regrouped only when each of its tasks may
    share a submission anywhere in it (a graph unit's tasks all may)."""
    units: list[Unit] = []
    notes: dict[str, CoarsenNote] = {}
    for u in part.units:
        if len(u.keys) > 1 and (u.graph or all(shares(nodes[k]) for k in u.keys)):
            new, note = coarsen_unit(u, nodes, hints)
            if note is not None:
                notes[new.keys[0]] = note
            units.append(new)
        else:
            units.append(u)
    if not notes:
        return part, notes
    return Partition(part.id, part.backend, tuple(units), part.dependencies, part.inputs), notes


def coarsen_unit(
    unit: Unit, nodes: Mapping[str, Node], hints: Coarsening
) -> tuple[Unit, CoarsenNote | None]:
    """One unit regrouped: a graph unit whose ``groups`` cover its keys (None when
    no two tasks were grouped: the unit is returned as it was)."""
    keys = unit.keys
    t = _Tasks(keys, nodes, hints)
    chains, level = _chains(t, hints)
    groups, why = _chunks(chains, level, t, hints)
    if len(groups) == len(keys):
        return unit, None
    order = tuple(keys[i] for g in groups for i in g)
    sizes = tuple(len(g) for g in groups)
    note = CoarsenNote(len(keys), len(groups), tuple(why.lines()))
    return Unit(unit.backend, order, unit.inputs, True, sizes), note


class _Tasks:
    """Per-key facts of one unit, by position: in-unit dependencies, number of
    in-unit dependents, estimated seconds (None: never measured), never grouped,
    resources."""

    __slots__ = ("alone", "fanout", "inner", "keys", "nodes", "res", "secs")

    def __init__(self, keys: tuple[str, ...], nodes: Mapping[str, Node], hints: Coarsening):
        n = len(keys)
        self.keys, self.nodes = keys, nodes
        index = {k: i for i, k in enumerate(keys)}
        inner: list[tuple[int, ...]] = [()] * n
        fanout = [0] * n
        secs: list[float | None] = [None] * n
        alone = [False] * n
        res: list[Any] = [()] * n
        # id(func) -> (seconds, never grouped); the functions live through the pass
        cache: dict[int, tuple[float | None, bool]] = {}
        for i, k in enumerate(keys):
            node = nodes[k]
            if node.deps:  # unique already (extract_refs)
                ds = tuple(index[d] for d in node.deps if d in index)
                if ds:
                    inner[i] = ds
                    for d in ds:
                        fanout[d] += 1
            c = cache.get(id(node.func))
            if c is None:
                c = cache[id(node.func)] = _estimate(node.func, hints)
            secs[i], alone[i] = c
            if node.options.resources:
                res[i] = tuple(sorted(node.options.resources.items()))
        self.inner, self.fanout, self.secs, self.alone, self.res = inner, fanout, secs, alone, res


def _estimate(func: Any, hints: Coarsening) -> tuple[float | None, bool]:
    fid = function_id(func)
    s = hints.durations.get(fid)
    big = hints.sizes.get(fid, 0.0) >= hints.max_result_bytes
    return s, big or (s is not None and s >= hints.long)


def _chains(t: _Tasks, hints: Coarsening) -> tuple[list[list[int]], list[int]]:
    """Keys grouped into chains (in order; a key that joins none is a chain of one),
    and each chain's level: 1 + the highest level of the chains it depends on."""
    inner, fanout, secs, alone, res = t.inner, t.fanout, t.secs, t.alone, t.res
    chains: list[list[int]] = []
    level: list[int] = []
    chain_of = [0] * len(inner)
    work: list[float] = []  # known seconds per chain
    unknown: list[int] = []  # tasks without an estimate per chain
    for i, ds in enumerate(inner):
        s = secs[i]
        if len(ds) == 1 and fanout[ds[0]] == 1 and not alone[i] and not alone[ds[0]]:
            c = chain_of[ds[0]]
            if (
                res[i] == res[ds[0]]
                and work[c] + (s or 0.0) <= hints.target
                and unknown[c] + (s is None) <= UNKNOWN_MAX_TASKS
                and len(chains[c]) < hints.max_tasks
            ):
                chains[c].append(i)
                chain_of[i] = c
                work[c] += s or 0.0
                unknown[c] += s is None
                continue
        chain_of[i] = len(chains)
        chains.append([i])
        level.append(1 + max([level[chain_of[d]] for d in ds]) if ds else 0)
        work.append(s or 0.0)
        unknown.append(s is None)
    return chains, level


def _chunks(
    chains: list[list[int]], level: list[int], t: _Tasks, hints: Coarsening
) -> tuple[list[list[int]], _Why]:
    """Chains packed into chunks per (level, resources): the groups in topological
    order (by level), and why."""
    buckets: dict[tuple[int, Any], list[int]] = {}
    placed: list[tuple[int, int, list[int]]] = []  # (level, first key, keys)
    why = _Why(t, hints)
    for c, ch in enumerate(chains):
        head = ch[0]
        if len(ch) == 1 and t.alone[head]:
            placed.append((level[c], head, ch))
            why.single(head)
        else:
            buckets.setdefault((level[c], t.res[head]), []).append(c)
    for (lv, _), members in buckets.items():
        for group in _split(members, chains, t.secs, hints, why):
            placed.append((lv, chains[group[0]][0], [i for c in group for i in chains[c]]))
    placed.sort(key=lambda p: (p[0], p[1]))
    return [g for _, _, g in placed], why


def _split(
    members: list[int],
    chains: list[list[int]],
    secs: list[float | None],
    hints: Coarsening,
    why: _Why,
) -> list[list[int]]:
    """Independent chains of one level cut into chunks of about equal work."""
    tasks = 0
    unknown = 0
    weights: list[float] = []
    for c in members:
        w = 0.0
        for i in chains[c]:
            s = secs[i]
            if s is None:
                unknown += 1
            else:
                w += s
        weights.append(w)
        tasks += len(chains[c])
    work = sum(weights)
    workers = max(1, hints.workers)
    if unknown:
        k = max(
            workers * UNKNOWN_SPREAD, ceil(unknown / UNKNOWN_MAX_TASKS), ceil(work / hints.target)
        )
        # without a measurement every task weighs the same
        weights = [float(len(chains[c])) for c in members]
    else:
        k = ceil(work / chunk_seconds(work, hints))
        if work >= workers * MIN_SPLIT_WORK:  # work for every worker: a multiple of them
            k = ceil(max(k, workers) / workers) * workers
    k = max(1, min(len(members), max(k, ceil(tasks / hints.max_tasks))))
    groups = _balanced(members, weights, k)
    why.chunks(groups, chains, unknown > 0, work)
    return groups


def chunk_seconds(work: float, hints: Coarsening) -> float:
    """Seconds of work per chunk for a level with ``work`` seconds of it: ``target``,
    or more when the level is so large that the scheduler's cost per remote task
    outweighs the wait at the end. With c chunks per worker the run costs about
    ``c * overhead`` plus half a chunk at the end; the sum is least at
    ``sqrt(2 * work * overhead / workers)``; never above ``max_chunk``."""
    best = sqrt(2 * work * hints.overhead / max(1, hints.workers))
    return max(hints.target, min(hints.max_chunk, best))


def _balanced(members: list[int], weights: list[float], k: int) -> list[list[int]]:
    """``members`` cut, in order, into ``k`` runs of about equal total weight."""
    if k <= 1:
        return [members]
    if k >= len(members):
        return [[m] for m in members]
    if not any(weights):
        weights = [1.0] * len(members)
    total = sum(weights)
    groups: list[list[int]] = [[]]
    done = 0.0
    for i, (m, w) in enumerate(zip(members, weights, strict=True)):
        to_open = k - len(groups)
        # a new run once this one has its share, or when every member left must
        # start one of the runs still to open
        if (
            groups[-1]
            and to_open > 0
            and (done >= total * len(groups) / k or len(members) - i <= to_open)
        ):
            groups.append([])
        groups[-1].append(m)
        done += w
    return groups


class _Why:
    """Explanation lines for one unit, one per kind of group and function."""

    def __init__(self, t: _Tasks, hints: Coarsening) -> None:
        self.t, self.hints = t, hints
        self.counts: dict[str, int] = {}
        self.singles: dict[tuple[str, float | None], int] = {}

    def _add(self, line: str) -> None:
        self.counts[line] = self.counts.get(line, 0) + 1

    def lines(self) -> list[str]:
        out = [f"{n} x {line}" if n > 1 else line for line, n in self.counts.items()]
        return out + self._single_lines()

    def _name(self, i: int) -> str:
        return self.t.nodes[self.t.keys[i]].name

    def chunks(
        self, groups: list[list[int]], chains: list[list[int]], unknown: bool, work: float
    ) -> None:
        h, secs = self.hints, self.t.secs
        for g in groups:
            ks = [i for c in g for i in chains[c]]
            if len(ks) == 1:
                continue
            kind = "fused chain" if len(g) == 1 else "chunk"
            if len(g) > 1 and any(len(chains[c]) > 1 for c in g):
                kind = "chunk of chains"
            if unknown:
                reason = (
                    f"no measured duration yet: spread over {h.workers} workers "
                    f"x {UNKNOWN_SPREAD}, at most {UNKNOWN_MAX_TASKS} tasks"
                )
            else:
                each = sum(secs[i] or 0.0 for i in ks) / len(ks)
                reason = (
                    f"est. {_seconds(each)} per task, {_seconds(each * len(ks))} per "
                    f"{kind} (at most {_seconds(chunk_seconds(work, h))}: "
                    f"{_seconds(work)} of work on this level for {h.workers} workers)"
                )
            self._add(f"{kind} of {len(ks)} {self._name(ks[0])}: {reason}")

    def single(self, i: int) -> None:
        key = (self._name(i), self.t.secs[i])
        self.singles[key] = self.singles.get(key, 0) + 1

    def _single_lines(self) -> list[str]:
        h, out = self.hints, []
        for (name, s), n in self.singles.items():
            if s is not None and s >= h.long:
                line = f"single {name}: est. {_seconds(s)} >= {_seconds(h.long)}"
            else:
                line = f"single {name}: results of {h.max_result_bytes:,.0f} bytes or more"
            out.append(f"{n} x {line}" if n > 1 else line)
        return out


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"

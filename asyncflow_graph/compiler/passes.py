"""Compiler passes: pure functions from graph to plan, each usable alone.

``compile_plan`` runs them in order: cull -> assign backends -> validate -> fuse ->
partition. Inputs are never modified. Node order in a batch is the order the calls
were made, which is already topological (a handle exists only after its call);
``_topological`` checks that cheaply and sorts only when a caller built a mapping
in another order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Container, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..data import InputFile, OutputFile
from ..errors import (
    BackendNotFoundError,
    MissingInputError,
    PromptNotSupportedError,
    SerializationError,
)
from ..graph import Graph
from ..protocol import Coarsening
from ..spec import EMPTY_MAPPING, Node, TaskKind
from .cached import CachePass, prune_cached
from .coarsen import coarsen
from .plan import ENGINE_BACKEND, Capabilities, CoarsenNote, Partition, Plan, Unit

__all__ = [
    "assign_backends",
    "compile_plan",
    "cull",
    "fuse",
    "merge_graph_units",
    "partition",
    "shares_submission",
    "validate",
]

#: Above this many partitions the (quadratic) maximality merge is skipped.
MAX_MERGE_PARTITIONS = 512


def cull(graph: Graph | Mapping[str, Node], keys: Iterable[str]) -> Graph:
    """The subgraph holding exactly ``keys`` and their ancestors."""
    g = graph if isinstance(graph, Graph) else Graph(graph)
    return g.cull(keys)


def assign_backends(nodes: Mapping[str, Node], default: str) -> dict[str, str]:
    """Each node's target: its ``backend=`` option, else the default; blocks run
    on the engine itself."""
    out: dict[str, str] = {}
    for key, node in nodes.items():
        if node.kind is TaskKind.BLOCK:
            out[key] = ENGINE_BACKEND
        else:
            out[key] = node.options.backend or default
    return out


def validate(
    nodes: Mapping[str, Node],
    backend_of: Mapping[str, str],
    backends: Mapping[str, Capabilities],
    pickles: Callable[[object], bool] | None = None,
    known: Mapping[str, Node] = EMPTY_MAPPING,
) -> dict[str, BaseException]:
    """Errors known before running: unknown backend, prompt to a backend without
    prompt support, an unpicklable callable bound for a process/remote backend,
    an ``InputFile`` that another task writes but this one does not wait for.
    ``known`` holds nodes compiled before
    (dependencies outside this batch)."""
    errors: dict[str, BaseException] = {}
    checked: dict[int, bool] = {}
    declared = _Declared()
    for key, node in nodes.items():
        if node.args:
            missing = _missing_input(node, nodes, known, declared)
            if missing is not None:
                errors[key] = missing
                continue
        target = backend_of[key]
        if target == ENGINE_BACKEND:
            continue
        caps = backends.get(target)
        if caps is None:
            errors[key] = BackendNotFoundError(target, list(backends))
        elif node.kind is TaskKind.PROMPT and not caps.supports_prompts:
            kind = f" ({caps.backend_type})" if caps.backend_type else ""
            errors[key] = PromptNotSupportedError(
                f"prompt task {node.name!r} was routed to backend {target!r}{kind}, which "
                f"cannot serve prompts; register an AI inference backend (for example "
                f"OpenAIInferenceBackend(name='ai', ...)) and route the task with "
                f"@flow.prompt_task(backend='ai')"
            )
        elif caps.needs_pickle and node.kind is TaskKind.FUNCTION and pickles is not None:
            ok = checked.get(id(node.func))
            if ok is None:
                ok = checked[id(node.func)] = pickles(node.func)
            if not ok:
                errors[key] = SerializationError(
                    f"task {node.name!r} cannot be sent to backend {target!r}: its function "
                    f"cannot be pickled (cloudpickle); define it at module level or route "
                    f"it to a thread backend"
                )
    return errors


def _missing_input(
    node: Node, nodes: Mapping[str, Node], known: Mapping[str, Node], declared: _Declared
) -> MissingInputError | None:
    """A race, not a missing file: ``node`` reads an ``InputFile`` that does not
    exist here and that another task of the batch declares as its ``OutputFile``,
    while ``node`` does not depend on that task. A file nothing declares is no
    error: a remote or staging backend may provide it, and a function task only
    receives the object (a local command fails at run time if it is missing)."""
    wanted = [a for a in node.args if type(a) is InputFile and a.produced_by_task]
    if not wanted:
        return None
    produced: set[str] = set()
    for d in node.deps:
        dep = nodes.get(d) or known.get(d)
        if dep is not None:
            produced.update(a.filename for a in dep.args if type(a) is OutputFile)
    for f in wanted:
        if f.filename in produced:
            continue
        writer = declared(nodes).get(f.filename)
        if writer is not None:
            return MissingInputError(
                f"task {node.name!r} reads InputFile({f.filepath!r}), which does not exist "
                f"yet: task {writer!r} declares it as its OutputFile, but it is not an "
                f"OutputFile of any task {node.name!r} depends on; pass the producing "
                f"task's handle as an argument, or fix the path"
            )
    return None


class _Declared:
    """``OutputFile`` name -> name of the task declaring it, over the batch being
    compiled; built once, and only when an input is missing (a rare path)."""

    def __init__(self) -> None:
        self._table: dict[str, str] | None = None

    def __call__(self, nodes: Mapping[str, Node]) -> dict[str, str]:
        if self._table is None:
            self._table = {
                a.filename: n.name for n in nodes.values() for a in n.args if type(a) is OutputFile
            }
        return self._table


def _topological(nodes: Mapping[str, Node]) -> list[str]:
    seen: set[str] = set()
    for key, node in nodes.items():
        for d in node.deps:
            if d in nodes and d not in seen:
                return Graph(nodes).toposort()
        seen.add(key)
    return list(nodes)


def shares_submission(node: Node, errors: Container[str]) -> bool:
    """The one fusion rule, used by every pass that fuses: only function tasks
    without a compile-time error and without a ``timeout=`` share a submission with
    other tasks. A timeout governs its own task alone, from its submission: in a
    shared unit its timer would cover the tasks before or after it, and a chain in
    a thread reports every outcome only at its end."""
    return (
        node.kind is TaskKind.FUNCTION and node.key not in errors and node.options.timeout is None
    )


def fuse(
    nodes: Mapping[str, Node],
    backend_of: Mapping[str, str],
    errors: Container[str] = (),
    order: list[str] | None = None,
    no_fuse: Container[str] = (),
) -> list[Unit]:
    """Group linear chains of function tasks on one backend into single units.

    ``b`` joins ``a``'s unit when ``b`` depends on ``a`` alone, ``a`` has no other
    dependent here, both may share a submission (:func:`shares_submission`), both
    run on the same backend (one that accepts chains), and both are async or both
    plain. Units come out in topological order."""
    flags: dict[int, bool] = {}  # by id: callables need not be hashable (nodes keep them alive)

    def is_async(func: Any) -> bool:
        flag = flags.get(id(func))
        if flag is None:
            flag = flags[id(func)] = inspect.iscoroutinefunction(func)
        return flag

    order = order if order is not None else _topological(nodes)
    n_dependents: dict[str, int] = {}
    for key in order:
        for d in nodes[key].deps:
            n_dependents[d] = n_dependents.get(d, 0) + 1
    chains: list[list[str]] = []
    chain_of: dict[str, list[str]] = {}
    for key in order:
        node = nodes[key]
        deps = node.deps
        if (
            len(deps) == 1
            and backend_of[key] not in no_fuse
            and (prev := chain_of.get(deps[0])) is not None
            and n_dependents[deps[0]] == 1
            and backend_of[deps[0]] == backend_of[key]
            and shares_submission(node, errors)
            and shares_submission(nodes[deps[0]], errors)
            # async and plain bodies run in different places (loop vs pool)
            and is_async(node.func) == is_async(nodes[deps[0]].func)
        ):
            prev.append(key)
            chain_of[key] = prev
            continue
        chain = [key]
        chains.append(chain)
        chain_of[key] = chain
    return [Unit(backend_of[c[0]], tuple(c), tuple(d for d in nodes[c[0]].deps)) for c in chains]


def partition(
    units: list[Unit], nodes: Mapping[str, Node], backend_of: Mapping[str, str]
) -> tuple[Partition, ...]:
    """Group units by backend into an acyclic, maximal set of partitions.

    A unit's stage is the number of backend changes on the longest path into it;
    grouping by (backend, stage) is acyclic because every edge between groups
    strictly increases the stage. Groups of one backend are then merged whenever
    no path between them leaves the pair, which makes the partitioning maximal."""
    unit_of: dict[str, int] = {}
    stage: list[int] = []
    for i, u in enumerate(units):
        s = 0
        for d in u.inputs:
            j = unit_of.get(d)
            if j is not None:
                s = max(s, stage[j] + (units[j].backend != u.backend))
        stage.append(s)
        for k in u.keys:
            unit_of[k] = i
    groups: dict[tuple[str, int], list[int]] = {}
    for i, u in enumerate(units):
        groups.setdefault((u.backend, stage[i]), []).append(i)
    members = list(groups.values())
    edges = _group_edges(members, units, unit_of)
    if len(members) <= MAX_MERGE_PARTITIONS:
        members, edges = _merge_maximal(members, edges, units)
    return _build_partitions(members, edges, units, unit_of, nodes)


def _group_edges(
    members: list[list[int]], units: list[Unit], unit_of: Mapping[str, int]
) -> list[set[int]]:
    group_of = {i: g for g, idx in enumerate(members) for i in idx}
    edges: list[set[int]] = [set() for _ in members]  # edges[g] = groups g depends on
    for g, idx in enumerate(members):
        for i in idx:
            for d in units[i].inputs:
                j = unit_of.get(d)
                if j is not None and group_of[j] != g:
                    edges[g].add(group_of[j])
    return edges


def _merge_maximal(
    members: list[list[int]], edges: list[set[int]], units: list[Unit]
) -> tuple[list[list[int]], list[set[int]]]:
    """Merge same-backend groups while the merge keeps the group DAG acyclic."""
    merged = True
    while merged:
        merged = False
        anc = _ancestor_bits(edges)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                if units[members[a][0]].backend != units[members[b][0]].backend:
                    continue
                if _path_via_other(a, b, anc, edges) or _path_via_other(b, a, anc, edges):
                    continue
                members, edges = _fuse_groups(members, edges, a, b)
                merged = True
                break
            if merged:
                break
    return members, edges


def _ancestor_bits(edges: list[set[int]]) -> list[int]:
    """anc[g]: bitset of the groups g transitively depends on."""
    order = _toposort_groups(edges)
    anc = [0] * len(edges)
    for g in order:
        bits = 0
        for d in edges[g]:
            bits |= anc[d] | (1 << d)
        anc[g] = bits
    return anc


def _toposort_groups(edges: list[set[int]]) -> list[int]:
    indeg = [len(e) for e in edges]
    users: list[list[int]] = [[] for _ in edges]
    for g, e in enumerate(edges):
        for d in e:
            users[d].append(g)
    ready = [g for g, n in enumerate(indeg) if n == 0]
    order = []
    while ready:
        g = ready.pop()
        order.append(g)
        for u in users[g]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    return order


def _path_via_other(src: int, dst: int, anc: list[int], edges: list[set[int]]) -> bool:
    """Is there a path src -> ... -> dst through some third group?"""
    return any(d != src and (anc[d] >> src) & 1 for d in edges[dst])


def _fuse_groups(
    members: list[list[int]], edges: list[set[int]], a: int, b: int
) -> tuple[list[list[int]], list[set[int]]]:
    new_members = [m for g, m in enumerate(members) if g != b]
    new_members[a] = sorted(members[a] + members[b])

    def remap(g: int) -> int:
        return a if g == b else (g - 1 if g > b else g)

    new_edges: list[set[int]] = [set() for _ in new_members]
    for g, e in enumerate(edges):
        for d in e:
            src, dst = remap(g), remap(d)
            if src != dst:
                new_edges[src].add(dst)
    return new_members, new_edges


def _build_partitions(
    members: list[list[int]],
    edges: list[set[int]],
    units: list[Unit],
    unit_of: Mapping[str, int],
    nodes: Mapping[str, Node],
) -> tuple[Partition, ...]:
    order = _toposort_groups(edges)
    pid = {g: i for i, g in enumerate(order)}
    out = []
    for g in order:
        group_units = tuple(units[i] for i in sorted(members[g]))
        inputs = tuple(dict.fromkeys(d for u in group_units for d in u.inputs if d not in unit_of))
        out.append(
            Partition(
                id=pid[g],
                backend=group_units[0].backend,
                units=group_units,
                dependencies=frozenset(pid[d] for d in edges[g]),
                inputs=inputs,
            )
        )
    return tuple(out)


def merge_graph_units(
    part: Partition, nodes: Mapping[str, Node], errors: Container[str]
) -> Partition:
    """Merge a partition's function units into one graph unit (one submission).

    A unit joins when every node of it may share a submission
    (:func:`shares_submission`) and every unit of this partition it depends on joined too.
    That set is closed under in-partition ancestors, so nothing outside it feeds it
    from inside the partition and the units stay acyclic. Units are in topological
    order, so concatenating their keys keeps the graph unit's keys topological."""
    keys_of_unit: dict[str, int] = {k: i for i, u in enumerate(part.units) for k in u.keys}
    joined: list[int] = []
    joined_set: set[int] = set()
    for i, unit in enumerate(part.units):
        if not all(shares_submission(nodes[k], errors) for k in unit.keys):
            continue
        if all(keys_of_unit.get(d, -1) in joined_set or d not in keys_of_unit for d in unit.inputs):
            joined.append(i)
            joined_set.add(i)
    if len(joined) < 2:
        return part
    keys = tuple(k for i in joined for k in part.units[i].keys)
    inside = set(keys)
    inputs = tuple(
        dict.fromkeys(d for i in joined for d in part.units[i].inputs if d not in inside)
    )
    merged = Unit(part.backend, keys, inputs, graph=True)
    units = [
        merged if i == joined[0] else u
        for i, u in enumerate(part.units)
        if i == joined[0] or i not in joined_set
    ]
    return Partition(part.id, part.backend, tuple(units), part.dependencies, part.inputs)


def compile_plan(
    nodes: Mapping[str, Node] | Graph,
    backends: Mapping[str, Capabilities],
    default_backend: str | None,
    *,
    targets: Iterable[str] | None = None,
    pickles: Callable[[object], bool] | None = None,
    known: Mapping[str, Node] = EMPTY_MAPPING,
    cache: CachePass | None = None,
    coarsening: Mapping[str, Coarsening] = EMPTY_MAPPING,
) -> Plan:
    """Compile ``nodes`` (optionally culled to ``targets``) into a :class:`Plan`.

    Dependencies outside ``nodes`` are inputs that the executor already knows;
    ``cache`` (the run's result cache) serves the tasks whose results it holds;
    ``coarsening``: backend name -> hints of the backends whose graph units the
    coarsen pass regroups (:mod:`~asyncflow_graph.compiler.coarsen`)."""
    if targets is not None:
        nodes = cull(nodes, targets)
    order = _topological(nodes)
    backend_of = assign_backends(nodes, default_backend or "default")
    errors = validate(nodes, backend_of, backends, pickles, known)
    no_fuse = {name for name, caps in backends.items() if not caps.fuse_chains}
    single: Container[str] = errors  # keys that must be submitted on their own
    hits: list[Unit] = []
    if cache is not None:
        order, hits, single = prune_cached(cache, nodes, order, backend_of, errors)
    units = fuse(nodes, backend_of, single, order, no_fuse)
    if hits:
        units = hits + units
    parts = partition(units, nodes, backend_of)
    graph_backends = {name for name, caps in backends.items() if caps.graph_units}
    if graph_backends:
        parts = tuple(
            merge_graph_units(p, nodes, single) if p.backend in graph_backends else p for p in parts
        )
    coarsened: dict[str, CoarsenNote] = {}
    if coarsening:
        parts = tuple(_coarsened(p, nodes, coarsening, single, coarsened) for p in parts)
    return Plan(
        # The plan takes the caller's batch as is (no copy on the hot path).
        nodes=nodes if isinstance(nodes, Graph | MappingProxyType) else MappingProxyType(nodes),
        partitions=parts,
        backend_of=MappingProxyType(backend_of),
        errors=MappingProxyType(errors),
        coarsened=MappingProxyType(coarsened) if coarsened else EMPTY_MAPPING,
    )


def _coarsened(
    part: Partition,
    nodes: Mapping[str, Node],
    coarsening: Mapping[str, Coarsening],
    errors: Container[str],
    notes: dict[str, CoarsenNote],
) -> Partition:
    hints = coarsening.get(part.backend)
    if hints is None:
        return part
    part, found = coarsen(part, nodes, hints, lambda n: shares_submission(n, errors))
    notes.update(found)
    return part

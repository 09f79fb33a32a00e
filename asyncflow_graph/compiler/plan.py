"""What the compiler produces: units, partitions and the plan that holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..protocol import CACHE_BACKEND, ENGINE_BACKEND, Capabilities, Unit
from ..spec import EMPTY_MAPPING, Node

if TYPE_CHECKING:
    from ..visualize import Drawing

__all__ = [
    "CACHE_BACKEND",
    "ENGINE_BACKEND",
    "Capabilities",
    "CoarsenNote",
    "Partition",
    "Plan",
    "Unit",
    "failed_plan",
]

#: a plan displayed in Jupyter is drawn inline up to this many tasks (dot is slow on more)
REPR_DRAW_LIMIT = 300


class CoarsenNote(NamedTuple):
    """How the coarsen pass regrouped one unit: ``tasks`` in ``remote_tasks``
    submissions to the remote scheduler, and why (one line per kind of group)."""

    tasks: int
    remote_tasks: int
    why: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Partition:
    """A maximal group of units on one backend; the partition DAG is acyclic."""

    id: int
    backend: str
    units: tuple[Unit, ...]
    #: ids of the partitions of this plan whose results this one needs
    dependencies: frozenset[int]
    #: keys from outside the plan (already submitted or done) this partition needs
    inputs: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for u in self.units for k in u.keys)


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled graph: partitions of fused units, and compile-time errors."""

    nodes: Mapping[str, Node]
    partitions: tuple[Partition, ...]
    backend_of: Mapping[str, str]
    #: key -> the error that task's future gets without running (validate pass)
    errors: Mapping[str, BaseException] = field(default_factory=lambda: EMPTY_MAPPING)
    #: first key of a regrouped unit -> how it was coarsened (coarsen pass)
    coarsened: Mapping[str, CoarsenNote] = field(default_factory=lambda: EMPTY_MAPPING)

    @property
    def units(self) -> list[Unit]:
        return [u for p in self.partitions for u in p.units]

    def __len__(self) -> int:
        return len(self.nodes)

    def explain(self) -> str:
        """A readable account of the plan: partitions, fused chains, errors."""
        lines = [
            f"Plan: {len(self.nodes)} tasks in {len(self.units)} submissions, "
            f"{len(self.partitions)} partitions"
        ]
        for p in self.partitions:
            deps = ", ".join(f"P{d}" for d in sorted(p.dependencies)) or "none"
            lines.append(
                f"  P{p.id} backend={p.backend!r} tasks={len(p.keys)} "
                f"submissions={len(p.units)} after={deps}"
                + (" (cache hits: nothing runs)" if p.backend == CACHE_BACKEND else "")
            )
            for u in p.units[:20]:
                sep = ", " if u.graph else " -> "
                names = sep.join(self.nodes[k].name for k in u.keys[:6])
                more = f" ... (+{len(u.keys) - 6})" if len(u.keys) > 6 else ""
                fused = (
                    f"{'graph' if u.graph else 'fused'} x{len(u.keys)}: " if len(u.keys) > 1 else ""
                )
                lines.append(f"    - {fused}{names}{more}")
                note = self.coarsened.get(u.keys[0]) if self.coarsened else None
                if note is not None:
                    lines.extend(_coarsen_lines(note))
            if len(p.units) > 20:
                lines.append(f"    ... {len(p.units) - 20} more submissions")
        if self.errors:
            lines.append(f"  errors ({len(self.errors)} tasks will fail without running):")
            for key, exc in list(self.errors.items())[:20]:
                name = self.nodes[key].name if key in self.nodes else key
                lines.append(f"    ! {name} [{key}]: {type(exc).__name__}: {exc}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter: the explanation, and the drawing inline for a plan small enough to
        draw at once (without Graphviz, the explanation alone)."""
        from html import escape

        bundle: dict[str, Any] = {"text/plain": self.explain()}
        html = f"<pre>{escape(self.explain())}</pre>"
        if len(self.nodes) <= REPR_DRAW_LIMIT:
            svg = self.visualize()._repr_svg_()
            if svg is not None:
                html += svg[svg.find("<svg") :]
        bundle["text/html"] = html
        return bundle

    @property
    def remote_tasks(self) -> int:
        """Tasks the backends' schedulers see: one per group of a coarsened unit,
        one per task elsewhere."""
        n = 0
        for u in self.units:
            n += len(u.groups) if u.groups else len(u.keys)
        return n

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        from ..visualize import visualize

        return visualize(self, filename=filename, **kwargs)


def failed_plan(node: Node, backend: str, error: BaseException) -> Plan:
    """The plan of ``node`` alone, ending with ``error`` without running (what a
    node the compiler failed on gets: it ends, its dependents fail after it)."""
    unit = Unit(backend, (node.key,), node.deps)
    part = Partition(0, backend, (unit,), frozenset(), node.deps)
    return Plan(
        nodes={node.key: node},
        partitions=(part,),
        backend_of={node.key: backend},
        errors={node.key: error},
    )


def _coarsen_lines(note: CoarsenNote) -> list[str]:
    out = [f"      coarsened: {note.tasks} tasks -> {note.remote_tasks} remote tasks"]
    out += [f"        {line}" for line in note.why[:8]]
    if len(note.why) > 8:
        out.append(f"        ... {len(note.why) - 8} more kinds of groups")
    return out

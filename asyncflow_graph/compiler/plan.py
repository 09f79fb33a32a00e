"""What the compiler produces: units, partitions and the plan that holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..spec import EMPTY_MAPPING, Node

if TYPE_CHECKING:
    from ..visualize import Drawing

__all__ = ["ENGINE_BACKEND", "Capabilities", "Partition", "Plan", "Unit"]

#: Pseudo-backend of block nodes: they run on the engine's own event loop.
ENGINE_BACKEND = "@engine"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; the compiler validates and plans against it."""

    supports_prompts: bool = False
    #: Work leaves this process (processes, remote clusters): callables must pickle.
    needs_pickle: bool = False
    remote: bool = False
    #: False for dry-run backends: builders of executables/prompts are not run.
    executes_code: bool = True
    max_concurrency: int | None = None
    #: False when the backend takes one task per submission (AsyncFlow adapters).
    fuse_chains: bool = True
    #: True when the backend runs a DAG of function tasks as one submission (Dask: one
    #: graph, one round trip); the compiler then merges each partition's function
    #: tasks into one graph unit.
    graph_units: bool = False
    #: True when the backend applies ``retries=`` itself (Dask's own retries): the
    #: executor then does not resubmit failed tasks on it.
    handles_retries: bool = False
    #: the backend's class name, for error messages ("" when it does not say)
    backend_type: str = ""


class Unit(NamedTuple):
    """One submission: nodes on one backend run as one piece of work
    (a NamedTuple: immutable and cheap, one per submission).

    A chain unit (``graph=False``, what fusion makes): only the first node has
    inputs from outside the unit, and each later node depends on exactly the node
    before it. A graph unit (``graph=True``, for backends with ``graph_units``):
    ``keys`` are in topological order, each node's dependencies are earlier keys or
    ``inputs``, and ``inputs`` are every dependency from outside the unit."""

    backend: str
    keys: tuple[str, ...]
    inputs: tuple[str, ...]
    graph: bool = False

    @property
    def head(self) -> str:
        return self.keys[0]


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
            )
            for u in p.units[:20]:
                sep = ", " if u.graph else " -> "
                names = sep.join(self.nodes[k].name for k in u.keys[:6])
                more = f" ... (+{len(u.keys) - 6})" if len(u.keys) > 6 else ""
                fused = (
                    f"{'graph' if u.graph else 'fused'} x{len(u.keys)}: " if len(u.keys) > 1 else ""
                )
                lines.append(f"    - {fused}{names}{more}")
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

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        from ..visualize import visualize

        return visualize(self, filename=filename, **kwargs)

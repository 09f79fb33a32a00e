"""The immutable task graph: a persistent mapping ``key -> Node``.

Adding nodes returns a new :class:`Graph` that shares structure with the old one.
The structure is a stack of frozen dict layers whose sizes shrink geometrically
(newest, smallest on top): a merge folds the top layers into the new one only while
they are no larger than it, so each node is copied O(log n) times over a graph's
life and a lookup probes O(log n) dicts. Old graphs stay valid and unchanged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .spec import Node

if TYPE_CHECKING:
    from .visualize import Drawing

__all__ = ["Graph"]


class Graph(Mapping[str, Node]):
    __slots__ = ("_dependents", "_layers", "_len")

    _layers: tuple[Mapping[str, Node], ...]
    _len: int
    _dependents: dict[str, tuple[str, ...]] | None

    def __init__(self, nodes: Mapping[str, Node] | Iterable[Node] = ()) -> None:
        layer = dict(nodes) if isinstance(nodes, Mapping) else {n.key: n for n in nodes}
        self._layers = (MappingProxyType(layer),) if layer else ()
        self._len = len(layer)
        self._dependents = None

    @classmethod
    def _from_layers(cls, layers: tuple[Mapping[str, Node], ...], length: int) -> Graph:
        g = cls.__new__(cls)
        g._layers = layers
        g._len = length
        g._dependents = None
        return g

    # -- Mapping ------------------------------------------------------------------

    def __getitem__(self, key: str) -> Node:
        for layer in reversed(self._layers):
            node = layer.get(key)
            if node is not None:
                return node
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # no exception on a miss
        for layer in reversed(self._layers):
            node = layer.get(key)
            if node is not None:
                return node
        return default

    def __contains__(self, key: object) -> bool:
        return any(key in layer for layer in self._layers)

    def __iter__(self) -> Iterator[str]:
        for layer in self._layers:
            yield from layer

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"<Graph: {self._len} nodes in {len(self._layers)} layers>"

    # -- building -----------------------------------------------------------------

    def add(self, node: Node) -> Graph:
        """A new graph with ``node`` added."""
        return self.merge((node,))

    def merge(self, nodes: Iterable[Node] | Graph) -> Graph:
        """A new graph with ``nodes`` added; keys must be new (or the very same node)."""
        if isinstance(nodes, Graph):
            nodes = nodes.values()
        fresh: dict[str, Node] = {}
        for node in nodes:
            old = fresh.get(node.key) or self.get(node.key)
            if old is None:
                fresh[node.key] = node
            elif old is not node:
                raise ConfigurationError(f"duplicate task key {node.key!r} in graph")
        if not fresh:
            return self
        layers = list(self._layers)
        top: Mapping[str, Node] = fresh
        # Fold smaller-or-equal layers into the new one (binary-counter merging).
        while layers and len(layers[-1]) <= 2 * len(top):
            top = {**layers.pop(), **top}
        layers.append(MappingProxyType(dict(top)) if top is fresh else MappingProxyType(top))
        return Graph._from_layers(tuple(layers), self._len + len(fresh))

    # -- structure ----------------------------------------------------------------

    def dependencies(self, key: str) -> tuple[str, ...]:
        return self[key].deps

    def dependents(self, key: str) -> tuple[str, ...]:
        """Keys of the nodes in this graph that depend on ``key``."""
        if self._dependents is None:
            index: dict[str, list[str]] = {}
            for node in self.values():
                for d in node.deps:
                    index.setdefault(d, []).append(node.key)
            self._dependents = {k: tuple(v) for k, v in index.items()}
        return self._dependents.get(key, ())

    def ancestors(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and every node they transitively depend on (present in the graph)."""
        seen: set[str] = set()
        todo = deque(k for k in keys if k in self)
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            todo.extend(d for d in self[k].deps if d not in seen and d in self)
        return seen

    def cull(self, keys: Iterable[str]) -> Graph:
        """The subgraph of ``keys`` and their ancestors."""
        keep = self.ancestors(keys)
        return Graph({k: self[k] for k in self if k in keep})

    def toposort(self) -> list[str]:
        """Keys in dependency order (Kahn's algorithm, stable w.r.t. insertion order)."""
        indeg = dict.fromkeys(self, 0)
        for node in self.values():
            indeg[node.key] = sum(1 for d in node.deps if d in indeg)
        ready = deque(k for k, n in indeg.items() if n == 0)
        order: list[str] = []
        while ready:
            k = ready.popleft()
            order.append(k)
            for dep in self.dependents(k):
                indeg[dep] -= 1
                if indeg[dep] == 0:
                    ready.append(dep)
        if len(order) != len(indeg):
            raise ConfigurationError("the task graph has a cycle")
        return order

    # -- tools ----------------------------------------------------------------------

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        """Draw the graph with Graphviz (see :func:`asyncflow_graph.visualize`)."""
        from .visualize import visualize

        return visualize(self, filename=filename, **kwargs)

    def to_mermaid(self, **kwargs: Any) -> str:
        from .visualize import to_mermaid

        return to_mermaid(self, **kwargs)

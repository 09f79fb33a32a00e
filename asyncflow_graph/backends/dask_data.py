"""Data a Dask batch carries: large values scattered ahead of the graph, and
arguments that cannot be pickled failing their own task only.

* A value of :data:`LARGE_VALUE` bytes or more (by ``dask.sizeof``), passed as a
  task's argument or coming from another backend, is not embedded in the graph:
  the graph would be pickled and hashed on the event loop (0.6 s for 100 MB, every
  other task of the process waiting). It is scattered to the cluster first
  (``client.scatter``: distributed serializes and sends large messages off the
  loop), and the task gets the Dask future instead; only then does the batch go.
* Submitting a graph fails as a whole when one task's arguments cannot be pickled.
  :func:`split_unpicklable` finds those tasks; each fails with a
  :class:`~asyncflow_graph.errors.SerializationError` naming it and the argument,
  and the rest of the batch is submitted without them (their dependents in the
  batch are ended by the executor, as dependents of a failed task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from ..protocol import Remote
from ..spec import Node, Ref
from .pickling import unpicklable_task

__all__ = [
    "LARGE_VALUE",
    "has_large_values",
    "scatter_large_values",
    "split_unpicklable",
    "without",
]

#: values at least this large (bytes, by dask.sizeof) are scattered before the graph
LARGE_VALUE = 1 << 20
# Values of these types are never large enough to matter: no sizeof() call for them.
_SMALL = frozenset({int, float, bool, type(None), complex, Ref, Remote})


def _large(value: Any) -> bool:
    if type(value) in _SMALL:
        return False
    from dask.sizeof import sizeof

    try:
        return int(sizeof(value)) >= LARGE_VALUE
    except Exception:  # sizeof is an estimate; a value it cannot size stays embedded
        return False


def _literals(node: Node) -> Iterator[tuple[int | str, Any]]:
    yield from enumerate(node.args)
    yield from node.kwargs.items()


def has_large_values(nodes: Mapping[str, Node], inputs: Mapping[str, Any]) -> bool:
    """Whether a batch holds a value worth scattering (cheap for small values)."""
    if any(_large(v) for v in inputs.values()):
        return True
    return any(_large(v) for n in nodes.values() for _, v in _literals(n))


async def scatter_large_values(
    client: Any, nodes: dict[str, Node], inputs: dict[str, Any], backend: str
) -> None:
    """Scatter the large values of a batch and refer to them instead, in place:
    a large input becomes a :class:`Remote` of this backend; a large literal
    argument becomes a reference to a new input (``<key>.arg<i>``)."""
    lifted: dict[str, Any] = {k: v for k, v in inputs.items() if _large(v)}
    for key, node in list(nodes.items()):
        big = {where: v for where, v in _literals(node) if _large(v)}
        if not big:
            continue
        args, kwargs, deps = list(node.args), dict(node.kwargs), list(node.deps)
        for where, value in big.items():
            name = f"{key}.arg{where}"
            lifted[name] = value
            deps.append(name)
            if isinstance(where, int):
                args[where] = Ref(name)
            else:
                kwargs[where] = Ref(name)
        nodes[key] = dataclasses.replace(node, args=tuple(args), kwargs=kwargs, deps=tuple(deps))
    if not lifted:
        return
    names = list(lifted)
    # hash=False: a content hash would read every byte on the loop, as tokenizing did.
    futures = await client.scatter([lifted[n] for n in names], hash=False)
    for name, future in zip(names, futures, strict=True):
        inputs[name] = Remote(backend, future)


def split_unpicklable(
    dsk: Mapping[str, Any],
    nodes: Mapping[str, Node],
    ours: Mapping[str, str],
    where: str,
) -> dict[str, BaseException]:
    """Our keys whose Dask task cannot be pickled, with the error of each."""
    import cloudpickle

    bad: dict[str, BaseException] = {}
    for dk, task in dsk.items():
        try:
            cloudpickle.dumps(task)
        except Exception as err:
            key = ours[dk]
            bad[key] = unpicklable_task(nodes[key], key, where, err)
    return bad


def without(nodes: Mapping[str, Node], dropped: set[str]) -> list[str]:
    """Keys of ``nodes`` that neither are in ``dropped`` nor depend on one of them
    in the batch (topological order: a dependent comes after its dependency)."""
    gone = set(dropped)
    kept = []
    for key, node in nodes.items():
        if key in gone or any(d in gone for d in node.deps):
            gone.add(key)
        else:
            kept.append(key)
    return kept

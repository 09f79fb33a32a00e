"""The compiler's cache pass: before partitioning, tasks whose results are in the
cache leave the graph they would run in and become units of the ``@cache``
pseudo-backend, which hands their results over without running anything.

The pass only asks a :class:`CachePass` (the run's cache, see
:mod:`asyncflow_graph.cache`) which keys are hits; the compiler knows nothing of
stores or tokens. Cached tasks (hits or not) are kept out of fused chains and graph
units, so each one is submitted on its own and a task whose key can only be known
once its inputs are (an upstream that still has to run) is looked up then.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence
from typing import Protocol

from ..protocol import CACHE_BACKEND, Unit
from ..spec import Node

__all__ = ["CachePass", "prune_cached"]


class CachePass(Protocol):
    def prune(
        self, nodes: Mapping[str, Node], order: Sequence[str], errors: Container[str]
    ) -> tuple[Collection[str], Collection[str]]:
        """``(hits, cached)``: the keys served from the cache, and every key that
        is cached at all (hits included), among ``nodes``."""


class _Either:
    """``k in a or k in b`` without building the union."""

    __slots__ = ("a", "b")

    def __init__(self, a: Container[str], b: Container[str]) -> None:
        self.a, self.b = a, b

    def __contains__(self, key: object) -> bool:
        return key in self.a or key in self.b


def prune_cached(
    cache: CachePass,
    nodes: Mapping[str, Node],
    order: list[str],
    backend_of: dict[str, str],
    errors: Container[str],
) -> tuple[list[str], list[Unit], Container[str]]:
    """``(order without the hits, one unit per hit, keys that must not be fused)``."""
    hits, cached = cache.prune(nodes, order, errors)
    if not cached:
        return order, [], errors
    for key in hits:
        backend_of[key] = CACHE_BACKEND
    if hits:
        order = [k for k in order if k not in hits]
    units = [Unit(CACHE_BACKEND, (k,), ()) for k in hits]
    return order, units, _Either(errors, cached)

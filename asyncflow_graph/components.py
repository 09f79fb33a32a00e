"""``flow.components``: AsyncFlow's introspection mapping, built on demand.

AsyncFlow keeps a dict uid -> ``{"type", "future", "description"}`` of every
component for the engine's whole life. Here nothing is recorded for it: the mapping
is a read-only view over the handles the executor holds anyway, and each entry (its
description dict above all) is built only when it is read. It holds no handle of
its own, so a handle the engine lets go is not kept alive by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

from .handle import TaskFuture
from .spec import TaskKind

__all__ = ["Components"]


class Components(Mapping[str, Mapping[str, Any]]):
    """uid -> ``{"type": "task" | "block", "description": dict, "future": handle}``."""

    __slots__ = ("_futures",)

    def __init__(self, futures: Mapping[str, asyncio.Future[Any]]) -> None:
        self._futures = futures

    def __getitem__(self, uid: str) -> Mapping[str, Any]:
        fut = self._futures[uid]
        if not isinstance(fut, TaskFuture):
            raise KeyError(uid)
        node = fut.node
        kind = "block" if node.kind is TaskKind.BLOCK else "task"
        return {"type": kind, "description": fut.describe(), "future": fut}

    def __iter__(self) -> Iterator[str]:
        futures = self._futures
        return (k for k in list(futures) if isinstance(futures.get(k), TaskFuture))

    def __len__(self) -> int:
        return sum(1 for f in list(self._futures.values()) if isinstance(f, TaskFuture))

    def __contains__(self, uid: object) -> bool:
        return isinstance(self._futures.get(uid), TaskFuture)  # type: ignore[call-overload]

    def __repr__(self) -> str:
        return f"<components of {len(self)} tasks and blocks>"

"""The task bodies every system runs.

``step`` returns ``1 + sum`` of its integer inputs, so for the tree-shaped workloads used here
the values of the sink tasks add up to the number of tasks: a cheap end-to-end check that every
task really ran once. Non-integer inputs (the dummy output of a no-op backend) count as 0.
"""

from __future__ import annotations

from typing import Any


def step(*inputs: Any) -> int:
    """Synchronous no-op task (Dask, the asyncio floor, plain-function engines)."""
    return 1 + sum(x for x in inputs if isinstance(x, int))


async def astep(*inputs: Any) -> int:
    """Coroutine no-op task for AsyncFlow-style engines (which require ``async def``)."""
    return step(*inputs)


async def ai_step(*inputs: Any) -> int:
    """Same as :func:`astep`; a separate function so it can be bound to the "ai" backend."""
    return step(*inputs)

"""Waits that would never end: a block body awaiting what cannot end before the
block itself does.

A block ends when its body returns, so a body that awaits its own handle, a task
that depends on the block, or another block that (transitively) awaits this one
waits forever. Each ``await`` of an open handle inside a block body records an
edge ``block -> key``; before the body waits, :func:`wait_cycle` looks for a path
from ``key`` back to the block through what ``key`` needs to end: its open
dependencies, and, for a running block, what its body awaits now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["describe_cycle", "wait_cycle"]


def wait_cycle(
    block: str,
    key: str,
    deps_of: Callable[[str], tuple[str, ...]],
    is_open: Callable[[str], bool],
    awaits: Mapping[str, str],
) -> list[str] | None:
    """The keys from ``key`` back to ``block`` if ``block`` waiting for ``key``
    would never end (``[block]`` when it awaits itself), else None."""
    if key == block:
        return [block]
    parent: dict[str, str | None] = {key: None}
    todo = [key]
    while todo:
        k = todo.pop()
        nexts = list(deps_of(k))
        waited = awaits.get(k)
        if waited is not None:
            nexts.append(waited)
        for n in nexts:
            if n in parent or not is_open(n):
                continue
            parent[n] = k
            if n == block:
                path = [n]
                step: str | None = k
                while step is not None:
                    path.append(step)
                    step = parent[step]
                return path[::-1]
            todo.append(n)
    return None


def describe_cycle(path: list[str], name_of: Callable[[str], str]) -> str:
    block = path[-1]
    if len(path) == 1:
        return f"block {name_of(block)} awaits itself: the wait would never end"
    chain = " -> ".join(name_of(k) for k in path)
    return (
        f"block {name_of(block)} awaits {name_of(path[0])}, which cannot end before the "
        f"block does ({chain}: each needs the next to end first); the wait would never "
        f"end. Await the task from outside the block, or restructure the dependency"
    )

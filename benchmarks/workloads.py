"""Workload shapes, written once against an abstract ``call`` so every system builds the same DAG.

A shape is a function ``build(call, n) -> sinks``. ``call(stage, *deps)`` creates one task of the
given stage ("step" on the default backend, "ai" on the second backend) whose arguments are the
handles ``deps`` of earlier tasks, and returns the new task's handle (an AsyncFlow future, a
``dask.delayed`` object, an asyncio task, an unbound node...). ``sinks`` are the handles nobody
depends on; awaiting/computing them runs the whole graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Call = Callable[..., Any]
Build = Callable[[Call, int], list[Any]]
Kind = Literal["run", "compile"]

CHAIN_LENGTH_W5 = 100


def fan_out(call: Call, n: int) -> list[Any]:
    """``n`` independent tasks."""
    return [call("step") for _ in range(n)]


def chain(call: Call, n: int) -> list[Any]:
    """``n`` tasks, each taking the previous task's result."""
    handle = call("step")
    for _ in range(n - 1):
        handle = call("step", handle)
    return [handle]


def map_reduce(call: Call, n: int) -> list[Any]:
    """``n`` independent maps reduced pairwise by a binary tree (``n - 1`` reduce tasks)."""
    level = fan_out(call, n)
    while len(level) > 1:
        paired = [call("step", a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level


def pipelines(call: Call, n: int) -> list[Any]:
    """``n`` concurrent 3-step pipelines whose middle step runs on the "ai" backend."""
    return [call("step", call("ai", call("step"))) for _ in range(n)]


def chains(call: Call, n: int) -> list[Any]:
    """``n`` independent chains of length ``n``."""
    return [chain(call, n)[0] for _ in range(n)]


def mixed(call: Call, n: int) -> list[Any]:
    """About ``n`` nodes: half a fan-out, half chains of length 100."""
    half = n // 2
    n_chains = max(1, (n - half) // CHAIN_LENGTH_W5)
    return fan_out(call, half) + [chain(call, CHAIN_LENGTH_W5)[0] for _ in range(n_chains)]


def count_tasks(build: Build, n: int) -> int:
    """Number of tasks a shape creates (built with a trivial ``call``)."""
    created = 0

    def call(_stage: str, *_deps: Any) -> None:
        nonlocal created
        created += 1

    build(call, n)
    return created


@dataclass(frozen=True)
class Workload:
    """One benchmark workload."""

    name: str
    title: str
    description: str
    build: Build
    sizes: Sequence[int]
    quick_sizes: Sequence[int]
    kind: Kind = "run"
    uses_ai: bool = False
    size_label: Callable[[int], str] = "{:,}".format

    def tasks(self, n: int) -> int:
        return count_tasks(self.build, n)


def _square(n: int) -> str:
    return f"{n} x {n}"


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "W1",
            "fan-out",
            "N independent no-op tasks, all gathered.",
            fan_out,
            sizes=(1_000, 10_000, 100_000),
            quick_sizes=(1_000,),
        ),
        Workload(
            "W2",
            "chain",
            "A chain of N tasks, each taking the previous result.",
            chain,
            sizes=(2_000,),
            quick_sizes=(100,),
        ),
        Workload(
            "W3",
            "map + tree reduce",
            "N independent maps, then a binary-tree reduction (N - 1 pairwise reduce tasks).",
            map_reduce,
            sizes=(4_096,),
            quick_sizes=(512,),
        ),
        Workload(
            "W4",
            "multi-backend pipelines",
            'N concurrent 3-step pipelines; the middle step goes to a second backend "ai" '
            "(a no-op backend for AsyncFlow-style engines; the same function elsewhere).",
            pipelines,
            sizes=(200,),
            quick_sizes=(50,),
            uses_ai=True,
        ),
        Workload(
            "W5",
            "build + compile",
            "Build a graph of N nodes (half fan-out, half chains of 100) and compile/optimize "
            "it without running anything.",
            mixed,
            sizes=(100_000,),
            quick_sizes=(5_000,),
            kind="compile",
        ),
        Workload(
            "W6",
            "many chains",
            "N independent chains of N tasks each.",
            chains,
            sizes=(100,),
            quick_sizes=(20,),
            size_label=_square,
        ),
    )
}

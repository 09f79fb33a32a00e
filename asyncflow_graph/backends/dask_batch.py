"""The Dask tasks of one submission, and what a worker runs for each.

A :class:`Batch` gathers the works of one ``submit`` call (their nodes in
topological order, the inputs computed elsewhere, commands, coarsened groups);
the backend turns it into one Dask graph. ``_Call`` ships a node to a worker as an
opaque object, so Dask never mistakes a user's argument for a graph key.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BackendError
from ..protocol import Command, Work
from ..spec import Node, call
from .dask_chunks import pick
from .helpers import run_command_sync

__all__ = ["Batch", "Call", "call_node", "explain", "run_command", "worker_died"]


class Call:
    """What a worker needs to run one node: shipped inside the Dask task as an
    opaque object, so Dask never mistakes user arguments for graph keys."""

    __slots__ = ("call", "consts", "names", "picks")

    def __init__(
        self, node: Node, names: list[str], consts: dict[str, Any], picks: list[int]
    ) -> None:
        self.call = node.to_call()
        self.names = names  # our keys of the values Dask passes in, in order
        self.consts = consts  # inputs computed elsewhere, embedded in the graph
        self.picks = picks  # per value: its element of a group's result, or -1

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.call, self.names, self.consts, self.picks)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.call, self.names, self.consts, self.picks = state

    def __dask_tokenize__(self) -> tuple[str, str, int]:
        # Our keys are unique: without this, Dask would pickle and hash every
        # argument on the loop to name the graph (seconds for a 100 MB one).
        return ("asyncflow_graph.Call", self.call.key, id(self))


def call_node(task: Call, values: list[Any]) -> Any:
    """Worker side: resolve the dependency values and run the function."""
    known = dict(task.consts)
    for name, value, index in zip(task.names, values, task.picks, strict=True):
        known[name] = pick(value, index)
    result = call(task.call, known)
    if inspect.iscoroutine(result):  # an async def task: workers run it in a fresh loop
        result = asyncio.run(result)
    return result


def run_command(cmd: Command) -> str:
    return run_command_sync(cmd, stop=_cancelled_on_this_worker())


def _cancelled_on_this_worker() -> Callable[[], bool] | None:
    """Worker side: whether the Dask task running now has been cancelled (Dask does
    not stop a running task's thread; its command's process group is killed)."""
    try:
        from distributed import get_worker
        from distributed.utils import thread_state  # type: ignore[attr-defined]

        worker, key = get_worker(), thread_state.key
    except Exception:  # not on a Dask worker (a local scheduler): nothing to ask
        return None

    def cancelled() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state in ("cancelled", "released", "forgotten")

    return cancelled


class Batch:
    """Nodes sent as one Dask graph, with the inputs they take from outside it."""

    __slots__ = ("commands", "deaths", "groups", "inputs", "nodes")

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}  # topological
        self.inputs: dict[str, Any] = {}
        self.commands: dict[str, Command] = {}
        self.groups: list[tuple[str, ...]] = []  # keys run as one Dask task (coarsen pass)
        self.deaths: dict[str, int] = {}  # key -> its workers that died, so far

    def add_work(self, work: Work) -> None:
        command = work.payload if isinstance(work.payload, Command) else None
        for node in work.nodes:
            self.add(node, work.inputs, command)
        start = 0
        for size in work.unit.groups:
            if size > 1:
                self.groups.append(work.unit.keys[start : start + size])
            start += size

    def add(self, node: Node, inputs: Mapping[str, Any], command: Command | None) -> None:
        self.nodes[node.key] = node
        self.inputs.update(inputs)
        if command is not None:
            self.commands[node.key] = command

    def only(self, keys: list[str]) -> Batch:
        """The part of this batch made of ``keys``."""
        part = Batch()
        for key in keys:
            part.add(self.nodes[key], {}, self.commands.get(key))
        part.inputs = self.inputs
        part.deaths = self.deaths  # worker deaths already charged count against retries=
        return part

    def rerun(self, lost: list[str], done: Mapping[str, Any], backend: str) -> Batch:
        """``lost`` keys and their dependents in this batch, fed by what finished."""
        again = Batch()
        dead = set(lost)
        for key, node in self.nodes.items():
            if key in dead or any(d in dead for d in node.deps):
                dead.add(key)
                again.add(node, {}, self.commands.get(key))
        again.inputs = dict(self.inputs)
        again.inputs.update(done)
        again.deaths = self.deaths
        return again


def worker_died(exc: BaseException) -> bool:
    return type(exc).__name__ == "KilledWorker"


def explain(exc: BaseException, node: Node) -> BaseException:
    if not worker_died(exc):
        return exc
    err = BackendError(
        f"task {node.name!r} [{node.key}] was lost: the Dask workers running it died "
        f"({exc}). Give the task retries= to resubmit it, and check the workers' memory "
        f"limits and logs"
    )
    err.__cause__ = exc
    return err

"""The script face: module-level decorators that build unbound nodes, and
``compute()`` that runs them synchronously, as ``dask.delayed`` does.

``asyncflow_graph.function_task`` & co. build :class:`Delayed` handles that know
their node and their parents; nothing runs until ``compute()``, which starts an
engine on a private event loop, feeds it the culled graph and returns the results
in the structure it was given.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import weakref
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from . import signals
from .compiler import Capabilities, Plan, compile_plan
from .decorators import TaskDefinition, make_definition
from .errors import ConfigurationError
from .graph import Graph
from .spec import Node, TaskKind, register_reference_type

if TYPE_CHECKING:
    from .backends.base import Backend
    from .visualize import Drawing

__all__ = ["Delayed", "compile", "compute", "executable_task", "function_task", "prompt_task"]


class Delayed:
    """An unbound task: a node plus its parents. Pass it to other tasks, draw it,
    compile it, or ``compute()`` it."""

    __slots__ = ("__weakref__", "key", "node", "parents")
    #: the builder every unbound node belongs to (the spec checks it)
    host: ClassVar[Any] = None

    def __init__(self, node: Node, parents: tuple[Delayed, ...]) -> None:
        self.node = node
        self.key = node.key
        self.parents = parents

    @property
    def graph(self) -> Graph:
        """This task and its ancestors."""
        return _merged_graph([self])

    def compute(self, **kwargs: Any) -> Any:
        return compute(self, **kwargs)[0]

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        return compile(self).visualize(filename, **kwargs)

    def __repr__(self) -> str:
        return f"Delayed({self.key!r})"


register_reference_type(Delayed)


class _ScriptBuilder:
    """The GraphBuilder of module-level decorators: it hands out keys and wraps
    nodes in Delayed handles (kept weakly, for pure-call sharing)."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        # Never set: unbound nodes belong to no workflow scope and no block.
        self.scope: ContextVar[Any] = ContextVar("asyncflow_graph.script", default=None)
        self._live: weakref.WeakValueDictionary[str, Delayed] = weakref.WeakValueDictionary()

    def foreign(self, handle: Any, task: str) -> Exception:
        engine = getattr(handle, "engine_uid", None)
        owner = f" of engine {engine}" if engine is not None else ""
        return ConfigurationError(
            f"module-level task {task!r} got {handle!r}{owner} as an argument; unbound "
            f"tasks take values and other unbound tasks only: pass the handle's value "
            f"(`await handle`), or create {task!r} with that engine's decorators"
        )

    def existing(self, key: str) -> Delayed | None:
        return self._live.get(key)

    def add(self, node: Node) -> Delayed:
        parents = []
        for k in node.deps:
            parent = self._live.get(k)
            if parent is None:
                raise RuntimeError(f"task {node.name!r} depends on {k!r}, which no longer exists")
            parents.append(parent)
        handle = Delayed(node, tuple(parents))
        self._live[node.key] = handle
        return handle


_builder = _ScriptBuilder()
Delayed.host = _builder


def _decorator(kind: TaskKind) -> Callable[..., Any]:
    def decorate(func: Any = None, /, **options: Any) -> Any:
        if func is None:
            return lambda f: make_definition(_builder, f, kind, options)
        return make_definition(_builder, func, kind, options)

    decorate.__name__ = f"{kind.value}_task"
    decorate.__doc__ = f"Module-level @{kind.value}_task: calls build unbound Delayed nodes."
    return decorate


function_task = _decorator(TaskKind.FUNCTION)
executable_task = _decorator(TaskKind.EXECUTABLE)
prompt_task = _decorator(TaskKind.PROMPT)


def _collect(obj: Any, out: list[Delayed]) -> None:
    if isinstance(obj, Delayed):
        out.append(obj)
    elif isinstance(obj, list | tuple | set | frozenset):
        for x in obj:
            _collect(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _collect(x, out)
    elif isinstance(obj, asyncio.Future):
        engine = getattr(obj, "engine_uid", None)
        raise ConfigurationError(
            f"compute()/compile() got {obj!r}, a handle of engine {engine}: it runs in that "
            f"engine already. `await` it there (or flow.compile(handle) for its plan); "
            f"compute() takes unbound tasks made by asyncflow_graph.function_task & co."
        )
    elif isinstance(obj, TaskDefinition):
        raise ConfigurationError(
            f"compute()/compile() got the task definition {obj!r} itself: call it to make "
            f"a task, e.g. compute({obj.name}(...))"
        )


def _tasks_in(objs: tuple[Any, ...]) -> list[Delayed]:
    """The unbound tasks at any depth of ``objs``; there must be at least one."""
    handles: list[Delayed] = []
    _collect(objs, handles)
    if not handles:
        shown = ", ".join(type(o).__name__ for o in objs) or "nothing"
        raise ConfigurationError(
            f"compute()/compile() got no task to run (got {shown}); pass tasks made by "
            f"asyncflow_graph.function_task & co., at any depth of lists, tuples and dicts"
        )
    return handles


def _rebuild(obj: Any, values: dict[str, Any]) -> Any:
    if isinstance(obj, Delayed):
        return values[obj.key]
    if isinstance(obj, dict):
        return {k: _rebuild(v, values) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [_rebuild(x, values) for x in obj]
        return items if type(obj) is list else type(obj)(items)
    return obj


def _merged_graph(handles: list[Delayed]) -> Graph:
    """The ancestors of ``handles`` in one traversal, in topological order."""
    seen: dict[str, Node] = {}
    todo = list(handles)
    while todo:
        d = todo.pop()
        if d.key not in seen:
            seen[d.key] = d.node
            todo.extend(d.parents)
    # Keys from one builder count up in call order, which is topological; sort
    # on that instead of a full toposort when every key has the counter form.
    try:
        order = sorted(seen, key=lambda k: int(k.rpartition(".")[2]))
    except ValueError:
        order = Graph(seen).toposort()
    return Graph(seen[k] for k in order)


def compile(*objs: Any, backends: Sequence[Backend] | None = None) -> Plan:
    """The plan for ``objs`` (handles at any depth) without running anything."""
    handles = _tasks_in(objs)
    caps: dict[str, Capabilities]
    if backends:
        caps = {b.name: b.capabilities for b in backends}
        default = backends[0].name
    else:
        caps, default = {"default": Capabilities()}, "default"
    return compile_plan(_merged_graph(handles), caps, default)


def compute(
    *objs: Any,
    backends: Sequence[Backend] | None = None,
    progress: bool = False,
    cache: Any = None,
) -> tuple[Any, ...]:
    """Run the tasks in ``objs`` from plain synchronous code and return the
    results in the same structure (tuples, lists, dicts of handles).

    ``progress=True`` shows tasks done / total per backend on stderr: a live rich
    bar on a terminal, one summary line otherwise (see
    :mod:`asyncflow_graph.telemetry.progress`). ``cache=`` is the engine's (see
    ``docs/caching.md``): True or a directory caches every function and executable
    task; None caches only the tasks declared with ``cache=True``.

    Ctrl-C cancels the running work, shuts the engine down and raises
    ``KeyboardInterrupt``; a second Ctrl-C ends the process at once."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "asyncflow_graph.compute() was called inside a running event loop; in async "
            "code create an engine (flow = await WorkflowEngine.create(...)) and `await` "
            "the handles instead"
        )
    return asyncio.run(_compute(objs, backends, progress, cache))


async def _compute(
    objs: tuple[Any, ...], backends: Sequence[Backend] | None, progress: bool, cache: Any = None
) -> tuple[Any, ...]:
    from .engine import WorkflowEngine

    handles = _tasks_in(objs)
    graph = _merged_graph(handles)
    from .backends.local import LocalExecutionBackend

    chosen = list(backends) if backends else [LocalExecutionBackend()]
    flow = await WorkflowEngine.create(backend=chosen, cache=cache)
    bar = None
    if progress:  # imported only when asked for: it may import rich
        from .telemetry.progress import ProgressBar

        bar = ProgressBar(flow).__enter__()  # attached before the graph is compiled
    futures = flow.add_graph(graph)
    signals.claim_interrupt(flow.loop)
    try:
        values = {h.key: await futures[h.key] for h in handles}
    except asyncio.CancelledError:
        if signals.received(flow.loop) is signal.SIGINT:
            # Ctrl-C: the engine is shutting down (the finally below joins it);
            # a script's caller expects KeyboardInterrupt, not a cancelled future.
            raise KeyboardInterrupt from None
        raise
    finally:
        await flow.shutdown()
        if bar is not None:
            bar.__exit__(None, None, None)
        for fut in futures.values():  # the error raised here is the one reported
            if fut.done() and not fut.cancelled():
                fut.exception()
    return tuple(_rebuild(o, values) for o in objs)

"""The intake: tasks created but not yet handed to the run state.

It owns the engine's growing graph, the batch of nodes created during this loop
turn, the backlog of earlier turns still being compiled in slices, keys cancelled
before they were compiled, and lazy demand. It is also the host the handles talk
to (:class:`~asyncflow_graph.handle.HandleHost`) and the graph builder the
decorators add nodes through (:class:`~asyncflow_graph.decorators.GraphBuilder`).

Eager mode (AsyncFlow's): nodes added during one loop turn are compiled at the end
of the turn and submitted, a large turn in slices of :data:`COMPILE_CHUNK`, one
slice per loop turn. Lazy mode (Dask's): nodes wait in the graph until a handle is
awaited; then exactly its not-yet-known ancestors are compiled and run.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from ..compiler import Plan, compile_plan, failed_plan
from ..describe import describe
from ..errors import ConfigurationError, EngineClosedError
from ..graph import Graph
from ..protocol import ENGINE_BACKEND, Backend, Coarsening, TaskState
from ..spec import EMPTY_MAPPING, Node, Ref, TaskKind, bind
from .faults import compile_error
from .retention import RELEASED, count_into
from .waits import describe_cycle, wait_cycle

if TYPE_CHECKING:
    from ..compiler.cached import CachePass
    from .driver import Executor
    from .events import RunView

__all__ = ["COMPILE_CHUNK", "Intake", "Scope"]

log = logging.getLogger("asyncflow_graph")

#: nodes compiled and submitted per loop turn at most. A turn that created more is
#: compiled in slices, in creation order (a node can only depend on nodes created
#: before it), one slice per loop turn: a slice's tasks are compiled, run and
#: reported while their objects are still in the CPU caches, and the compiler's
#: per-key tables stay small, so the cost per task stays flat from 1k to 100k tasks.
#: Measured on W1 (same process, alternating, medians of 7): at 100k tasks 15.6
#: µs/task in one piece, 13.0 / 13.4 / 13.9 in slices of 1k / 2k / 4k; at 10k 9.9 in
#: one piece, 9.6 in slices of 1k. Only a chain crossing a slice border is fused in
#: two parts.
COMPILE_CHUNK = 1024

#: (workflow id, key of the enclosing block) of the code creating tasks
Scope = tuple[str | None, str | None]


#: the engine's handle class: an ``asyncio.Future`` subclass with slots for its key,
#: its state and its host (:class:`~asyncflow_graph.handle.TaskFuture`)
HandleType = Callable[..., Any]


class Intake:
    def __init__(
        self,
        executor: Executor,
        *,
        default_backend: str,
        lazy: bool,
        handle_type: HandleType,
    ) -> None:
        self.executor = executor
        self.loop = executor.loop
        self.engine_uid = executor.engine_uid
        self.default_backend = default_backend
        self.lazy = lazy
        self.handle_type = handle_type  # the engine's TaskFuture class
        self.scope: ContextVar[Scope | None] = ContextVar(
            f"asyncflow_graph.{executor.engine_uid}", default=None
        )
        #: eager: the nodes created this turn; lazy: every node not demanded yet
        self._pending: dict[str, Node] = {}
        #: earlier turns' batches, not all compiled yet, each with its iterator
        self._backlog: collections.deque[tuple[dict[str, Node], Iterator[tuple[str, Node]]]]
        self._backlog = collections.deque()
        self.retention = executor.retention
        self._dep_pending, self._dep_users = self.retention.pending, self.retention.users
        self._futures = executor.futures  # the run's open handles
        self.retention.hooks.append(self._let_go)
        self.counter = itertools.count(1)  # GraphBuilder: numbers the keys
        self._flush_scheduled = False
        self._compiling = False  # inside _compile_slice: a cancel must not flush
        self._precancelled: dict[str, Any] = {}
        self._demanded: list[str] = []  # lazy keys awaited before the backends started
        #: block key -> the key its body awaits now (or last awaited)
        self._awaits: dict[str, str] = {}
        #: a pure call's key -> the key it runs under now (its first value was let go
        #: of while its node was still needed), and back
        self._renamed: dict[str, str] = {}
        self._base: dict[str, str] = {}
        self._wanted: list[str] = []  # lazy keys demanded this loop turn, compiled at its end
        self.started = False  # the backends are up: compiling may begin
        self.dead = False  # the start failed: nothing is ever compiled
        #: the result cache's compiler pass, once the engine opened one
        self.cache: CachePass | None = None
        self.closed = False  # shut down: no new task is accepted

    # -- GraphBuilder: what the decorators call -----------------------------------------

    def foreign(self, handle: Any, task: str) -> Exception:
        here = self.engine_uid
        other = getattr(handle, "engine_uid", None)
        if other is None:
            return ConfigurationError(
                f"task {task!r} of engine {here} got {handle!r} as an argument: an unbound "
                f"task made by a module-level decorator (asyncflow_graph.function_task). "
                f"Run it with asyncflow_graph.compute(...) and pass its value, or create it "
                f"with this engine's decorators (@flow.function_task)"
            )
        return ConfigurationError(
            f"task {task!r} of engine {here} got the handle of {handle.key!r} of engine "
            f"{other} as an argument; a handle belongs to the engine that made it (the same "
            f"key here is another task): pass its value (`await handle`) instead"
        )

    def existing(self, key: str) -> asyncio.Future[Any] | None:
        """The live handle of ``key`` (a pure call made before), else a new handle
        for it if the run still knows it; None when it must be made anew."""
        key = self._renamed.get(key, key)
        fut = self.executor.handles.get(key)
        if fut is not None:
            return fut
        if not self._known(key):
            return None
        executor = self.executor
        return executor.handles.rehandle(key, self._handle(key), executor.state)

    def _known(self, key: str) -> bool:
        state = self.executor.state
        return (state.knows(key) and state.values.get(key) is not RELEASED) or (
            key in self._pending or any(key in batch for batch, _ in self._backlog)
        )

    def add(self, node: Node) -> Any:
        if self.closed:
            raise EngineClosedError(
                f"engine {self.executor.engine_uid} has been shut down; create a new "
                f"WorkflowEngine to run {node.name!r}"
            )
        if node.options.pure and self._taken(node.key):  # its value was let go of: anew
            base = self._base.get(node.key, node.key)
            node = replace(node, key=f"{base}.{next(self.counter)}")
            self._renamed[base] = node.key
            self._base[node.key] = base
        # Inlined: once per task on the hot path.
        key = node.key
        fut = self.handle_type(loop=self.loop)
        fut.key = key
        fut.state = TaskState.PENDING
        fut.host = self
        self._futures[key] = fut
        deps = node.deps
        if deps:  # their values stay until this task ended (Retention.depend, inlined)
            count_into(self._dep_pending, deps)
            count_into(self._dep_users, deps)
        self._pending[key] = node
        if not self._flush_scheduled and not self.lazy:
            self._schedule_flush()
        return fut

    def _handle(self, key: str) -> asyncio.Future[Any]:
        fut = self.handle_type(loop=self.loop)
        fut.key = key
        fut.state = TaskState.PENDING
        fut.host = self
        self.retention.held_again(key)
        return fut  # type: ignore[no-any-return]

    def _taken(self, key: str) -> bool:
        """A pure call's key the run still knows, though not as a usable value."""
        return self.executor.state.knows(key) or key in self._pending

    def _let_go(self, released: list[str], forgotten: list[str]) -> None:
        if not (self._awaits or self._base):
            return
        for key in (*released, *forgotten):
            self._awaits.pop(key, None)
            base = self._base.pop(key, None)
            if base is not None and self._renamed.get(base) == key:
                del self._renamed[base]

    def adopt(self, graph: Graph) -> dict[str, asyncio.Future[Any]]:
        """Add the nodes of an unbound graph (the script face's ``compute()``)."""
        return {node.key: self.add(node) for node in graph.values()}

    # -- the graph ------------------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        """Every task the run still knows (created and not forgotten), as an
        immutable graph: a snapshot, built when asked for."""
        return Graph({k: self.node(k) for k in self._known_keys()})

    def _known_keys(self) -> Iterator[str]:
        """Every key known, in creation order (eager slices compile in that order)."""
        yield from self.executor.state.nodes
        for batch, _ in self._backlog:
            yield from (k for k in batch if k not in self.executor.state.nodes)
        yield from self._pending

    def graph_of(self, keys: Iterable[str]) -> Graph:
        """``keys`` and their ancestors still known, in creation order."""
        found: set[str] = set()
        todo = list(keys)
        while todo:
            k = todo.pop()
            if k in found:
                continue
            node = self._node_or_none(k)
            if node is not None:
                found.add(k)
                todo.extend(node.deps)
        return Graph({k: self.node(k) for k in self._known_keys() if k in found})

    def node(self, key: str) -> Node:
        node = self._node_or_none(key)
        if node is None:
            raise KeyError(key)
        return node

    def _node_or_none(self, key: str) -> Node | None:
        node = self._pending.get(key) or self.executor.state.nodes.get(key)
        if node is None:
            for batch, _ in self._backlog:
                node = batch.get(key)
                if node is not None:
                    break
        return node

    def compile(self, nodes: Mapping[str, Node]) -> Plan:
        executor = self.executor
        return compile_plan(
            nodes,
            executor.capabilities,
            self.default_backend,
            pickles=_pickles,
            known=executor.state.nodes,
            cache=self.cache,
            coarsening=_coarsening(executor.backends),
        )

    def plan_for(self, keys: Iterable[str] | None) -> Plan:
        """The plan for ``keys`` and their ancestors (every task if None)."""
        return self.compile(self.graph if keys is None else self.graph_of(keys))

    # -- eager compilation ----------------------------------------------------------------

    def start(self) -> None:
        """The backends are up: compile what was created (or demanded) meanwhile."""
        self.started = True
        if self._pending and not self.lazy:
            self._schedule_flush()
        demanded, self._demanded = self._demanded, []
        for key in demanded:
            self.demand(key)

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        self.loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        """End of a loop turn (eager): compile and submit one slice of what was
        added; the next slice goes in the next turn."""
        self._flush_scheduled = False
        if not self._compiles_now():
            return
        self._take_pending()
        if self._backlog:
            self._compile_slice()
            if self._backlog and not self._flush_scheduled:  # a slice's tasks may add more
                self._schedule_flush()

    def flush(self) -> None:
        """Compile and submit everything added so far, now (eager)."""
        if not self._compiles_now():
            return
        self._take_pending()
        while self._backlog:
            self._compile_slice()

    def _compiles_now(self) -> bool:
        return self.started and not self.dead and not self.lazy

    def _take_pending(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, {}
            self._backlog.append((batch, iter(batch.items())))

    def _compile_slice(self) -> None:
        backlog = self._backlog
        while backlog:
            chunk = dict(itertools.islice(backlog[0][1], COMPILE_CHUNK))
            if len(chunk) < COMPILE_CHUNK:
                backlog.popleft()
            if chunk:
                pre = self._precancelled
                cancelled = {k: pre.pop(k) for k in chunk if k in pre} if pre else EMPTY_MAPPING
                self._compiling = True
                try:
                    with gc_paused(len(chunk)):
                        self._add(chunk, cancelled)
                finally:
                    self._compiling = False
                return

    def _add(self, nodes: Mapping[str, Node], cancelled: Mapping[str, Any]) -> None:
        """Compile ``nodes`` and hand the plan to the executor. Should the compiler
        raise (an error inside asyncflow_graph), each node is compiled alone, in
        order, so that only the ones it fails for end, with an EngineError."""
        try:
            plan = self.compile(nodes)
        except Exception:
            log.exception("compiling %d tasks failed; compiling them one by one", len(nodes))
            self._add_each(nodes, cancelled)
            return
        self.executor.add_plan(plan, cancelled)

    def _add_each(self, nodes: Mapping[str, Node], cancelled: Mapping[str, Any]) -> None:
        for key, node in nodes.items():
            try:
                plan = self.compile({key: node})
            except Exception as exc:
                plan = failed_plan(node, self._target(node), compile_error(node, exc))
            own = {key: cancelled[key]} if key in cancelled else EMPTY_MAPPING
            self.executor.add_plan(plan, own)

    def _target(self, node: Node) -> str:
        if node.kind is TaskKind.BLOCK:
            return ENGINE_BACKEND
        return node.options.backend or self.default_backend

    # -- HandleHost: what the handles call ------------------------------------------------

    @property
    def view(self) -> RunView:
        return self.executor.view

    def describe(self, key: str) -> dict[str, Any]:
        """AsyncFlow's description dict of ``key`` (its inputs' values once known)."""
        node = self.node(key)
        values = self.executor.state.values
        args, kwargs = node.args, node.kwargs
        if node.deps:  # inputs shown by value once known (and not released yet)
            known = _OrRef(
                (d, v) for d in node.deps if (v := values.get(d, RELEASED)) is not RELEASED
            )
            if known:
                args, kwargs = bind(node, known)
        payload = self.executor.payloads.get(key)
        deps = {d: n for d in node.deps if (n := self._node_or_none(d)) is not None}
        return describe(node, deps, args=args, kwargs=kwargs, payload=payload)

    def demand(self, key: str) -> None:
        """Lazy mode: compile and run ``key`` and its not-yet-run ancestors, at the
        end of this loop turn together with every key demanded in it (a ``gather``
        of 10,000 handles is one compile and one submission, not 10,000)."""
        if self.dead or self.executor.state.knows(key):
            return
        if not self.started:
            self._demanded.append(key)
            return
        self._wanted.append(key)
        if len(self._wanted) == 1:
            self.loop.call_soon(self._compile_demanded)

    def _compile_demanded(self) -> None:
        keys, self._wanted = self._wanted, []
        if self.dead or not keys:
            return
        needed = self._ancestors(keys)
        pre = self._precancelled
        # In slices, as eager mode compiles a large turn (see COMPILE_CHUNK); the
        # ancestors come first, so a slice's inputs are known when it is compiled.
        for start in range(0, len(needed), COMPILE_CHUNK):
            chunk = dict(needed[start : start + COMPILE_CHUNK])
            cancelled = {k: pre.pop(k) for k in chunk if k in pre} if pre else EMPTY_MAPPING
            for k in chunk:
                del self._pending[k]  # compiled now: the run state holds it
            with gc_paused(len(chunk)):
                self._add(chunk, cancelled)

    def _ancestors(self, keys: list[str]) -> list[tuple[str, Node]]:
        """``keys`` and their ancestors the run state does not know yet, each after
        its dependencies (an iterative post-order walk: no recursion limit)."""
        state = self.executor.state
        out: list[tuple[str, Node]] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(k, False) for k in reversed(keys)]
        while stack:
            k, expanded = stack.pop()
            if expanded:
                out.append((k, self._pending[k]))
                continue
            if k in seen or state.knows(k):
                continue
            seen.add(k)
            stack.append((k, True))
            stack.extend((d, False) for d in reversed(self._pending[k].deps) if d not in seen)
        return out

    def cancel(self, key: str, msg: Any) -> bool:
        """Cancel ``key`` and its dependents, wherever it is now."""
        state = self.executor.state
        if not state.knows(key) and not self._compiling:
            self.flush()  # eager: created this turn, or waiting in the backlog
        if state.knows(key):
            return self.executor.cancel(key, msg)
        # Not compiled (lazy: not demanded; eager: cancelled from inside a slice's
        # compile, e.g. by an observer): remember, so it and its dependents end
        # cancelled when compiled.
        self._precancelled[key] = msg
        return self.executor.handles.cancel(key, msg)

    def awaiting(self, key: str) -> None:
        """The calling code awaits ``key``'s open handle. Inside a block body, a wait
        for something that cannot end before the block does raises instead."""
        scope = self.scope.get()
        if scope is None or scope[1] is None:
            return
        block = scope[1]
        path = wait_cycle(block, key, self._deps_of, self._is_open, self._awaits)
        if path is not None:
            raise ConfigurationError(describe_cycle(path, self._name_of))
        self._awaits[block] = key

    def _deps_of(self, key: str) -> tuple[str, ...]:
        try:
            return self.node(key).deps
        except KeyError:
            return ()

    def _is_open(self, key: str) -> bool:
        state = self.executor.state
        return state.is_open(key) or not state.knows(key)

    def _name_of(self, key: str) -> str:
        try:
            return f"{self.node(key).name!r} [{key}]"
        except KeyError:
            return repr(key)

    def fetch(self, key: str) -> None:
        """Fetch ``key``'s value from the backend that kept it (a remote result)."""
        self.executor.fetch_for_handle(key)

    # -- shutdown -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop taking tasks; compile what eager mode still owes the run."""
        self._flush_scheduled = False
        if self.lazy:
            self._compile_demanded()  # demanded this turn: they run (or end) with the rest
        else:
            self.flush()
        self.closed = True

    def abort(self) -> None:
        """The start failed: nothing may be compiled onto half-started backends."""
        self.dead = self.closed = True
        self._pending = {}


class _OrRef(dict[str, Any]):
    """Values by key; a key without one (not known yet, or released) stays a Ref."""

    def __missing__(self, key: str) -> Ref:
        return Ref(key)


def _coarsening(backends: Mapping[str, Backend]) -> Mapping[str, Coarsening]:
    """The grouping hints of the backends that give some, now."""
    out: dict[str, Coarsening] = {}
    for name, b in backends.items():
        hints = b.coarsening()
        if hints is not None:
            out[name] = hints
    return out


def _pickles(obj: object) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception:
        return False
    return True

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from ..compiler import Plan, compile_plan
from ..describe import describe
from ..errors import EngineClosedError
from ..graph import Graph
from ..protocol import Backend, Coarsening, TaskState
from ..spec import EMPTY_MAPPING, Node, bind

if TYPE_CHECKING:
    from ..compiler.cached import CachePass
    from .driver import Executor
    from .events import RunView

__all__ = ["COMPILE_CHUNK", "Intake", "Scope"]

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
        self.default_backend = default_backend
        self.lazy = lazy
        self.handle_type = handle_type  # the engine's TaskFuture class
        self.scope: ContextVar[Scope | None] = ContextVar(
            f"asyncflow_graph.{executor.engine_uid}", default=None
        )
        self._graph = Graph()
        self._pending: dict[str, Node] = {}
        #: merged into the graph, not compiled yet: iterators over earlier turns' nodes
        self._backlog: collections.deque[Iterator[tuple[str, Node]]] = collections.deque()
        self.counter = itertools.count(1)  # GraphBuilder: numbers the keys
        self._flush_scheduled = False
        self._compiling = False  # inside _compile_slice: a cancel must not flush
        self._precancelled: dict[str, Any] = {}
        self._demanded: list[str] = []  # lazy keys awaited before the backends started
        self._wanted: list[str] = []  # lazy keys demanded this loop turn, compiled at its end
        self.started = False  # the backends are up: compiling may begin
        self.dead = False  # the start failed: nothing is ever compiled
        #: the result cache's compiler pass, once the engine opened one
        self.cache: CachePass | None = None
        self.closed = False  # shut down: no new task is accepted

    # -- GraphBuilder: what the decorators call -----------------------------------------

    def existing(self, key: str) -> asyncio.Future[Any] | None:
        return self.executor.futures.get(key)

    def add(self, node: Node) -> Any:
        if self.closed:
            raise EngineClosedError(
                f"engine {self.executor.engine_uid} has been shut down; create a new "
                f"WorkflowEngine to run {node.name!r}"
            )
        # Inlined: once per task on the hot path.
        fut = self.handle_type(loop=self.loop)
        fut.key = node.key
        fut.state = TaskState.PENDING
        fut.host = self
        self.executor.futures[node.key] = fut
        self._pending[node.key] = node
        if not self._flush_scheduled and not self.lazy:
            self._schedule_flush()
        return fut

    def adopt(self, graph: Graph) -> dict[str, asyncio.Future[Any]]:
        """Add the nodes of an unbound graph (the script face's ``compute()``)."""
        return {node.key: self.add(node) for node in graph.values()}

    # -- the graph ------------------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        """Every task created so far, as an immutable graph."""
        if self._pending:
            self._graph = self._graph.merge(self._pending.values())
            if self.lazy:  # eager mode keeps them pending for the end-of-turn compile
                self._pending = {}
        return self._graph

    def node(self, key: str) -> Node:
        node = self._pending.get(key) or self.executor.state.nodes.get(key)
        return node if node is not None else self.graph[key]

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
        graph = self.graph
        return self.compile(graph if keys is None else graph.cull(keys))

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
            with gc_paused(len(batch)):
                self._graph = self._graph.merge(batch.values())
            self._backlog.append(iter(batch.items()))

    def _compile_slice(self) -> None:
        backlog = self._backlog
        while backlog:
            chunk = dict(itertools.islice(backlog[0], COMPILE_CHUNK))
            if len(chunk) < COMPILE_CHUNK:
                backlog.popleft()
            if chunk:
                pre = self._precancelled
                cancelled = {k: pre.pop(k) for k in chunk if k in pre} if pre else EMPTY_MAPPING
                self._compiling = True
                try:
                    with gc_paused(len(chunk)):
                        self.executor.add_plan(self.compile(chunk), cancelled)
                finally:
                    self._compiling = False
                return

    # -- HandleHost: what the handles call ------------------------------------------------

    @property
    def view(self) -> RunView:
        return self.executor.view

    def describe(self, key: str) -> dict[str, Any]:
        """AsyncFlow's description dict of ``key`` (its inputs' values once known)."""
        node = self.node(key)
        values = self.executor.state.values
        args, kwargs = node.args, node.kwargs
        if node.deps and all(d in values for d in node.deps):
            args, kwargs = bind(node, values)
        payload = self.executor.payloads.get(key)
        return describe(node, self.graph, args=args, kwargs=kwargs, payload=payload)

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
            with gc_paused(len(chunk)):
                self.executor.add_plan(self.compile(chunk), cancelled)

    def _ancestors(self, keys: list[str]) -> list[tuple[str, Node]]:
        """``keys`` and their ancestors the run state does not know yet, each after
        its dependencies (an iterative post-order walk: no recursion limit)."""
        state, graph = self.executor.state, self.graph
        out: list[tuple[str, Node]] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(k, False) for k in reversed(keys)]
        while stack:
            k, expanded = stack.pop()
            if expanded:
                out.append((k, graph[k]))
                continue
            if k in seen or state.knows(k):
                continue
            seen.add(k)
            stack.append((k, True))
            stack.extend((d, False) for d in reversed(graph[k].deps) if d not in seen)
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
        return self.executor.cancel_handle(key, msg)

    def fetch(self, key: str) -> None:
        """Fetch ``key``'s value from the backend that kept it (a remote result)."""
        self.executor.fetch_for_handle(key)

    # -- shutdown -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop taking tasks; compile what eager mode still owes the run."""
        self._flush_scheduled = False
        if self.lazy:
            self._compile_demanded()  # demanded this turn: they run (or end) with the rest
            _ = self.graph  # merge the pending nodes: they end cancelled with the rest
        else:
            self.flush()
        self.closed = True

    def abort(self) -> None:
        """The start failed: nothing may be compiled onto half-started backends."""
        self.dead = self.closed = True
        self._pending = {}


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

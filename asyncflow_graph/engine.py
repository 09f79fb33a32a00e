"""``WorkflowEngine``: the AsyncFlow-compatible face, a thin layer over the
graph, the compiler and the executor.

Eager mode (AsyncFlow's): nodes added during one loop turn are compiled at the end
of the turn and submitted (a large turn in slices, one per loop turn). Lazy mode
(Dask's): nodes wait in the graph until a handle is awaited; then exactly its
ancestors are compiled and run.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import signal
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._gc import gc_paused
from .backends.base import Backend
from .compiler import Plan, compile_plan
from .decorators import TaskDefinition, build_options, make_definition
from .errors import ConfigurationError, EngineClosedError
from .executor import Executor
from .executor.events import RunObserver
from .graph import Graph
from .handle import LazyTaskFuture, RemoteTaskFuture, TaskFuture
from .spec import EMPTY_MAPPING, Node, TaskKind

if TYPE_CHECKING:
    from .visualize import Drawing

__all__ = ["WorkflowEngine"]

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

log = logging.getLogger("asyncflow_graph")

#: (workflow id, key of the enclosing block) of the code creating tasks
Scope = tuple[str | None, str | None]


class EngineListener(Protocol):
    """What :meth:`WorkflowEngine.add_listener` calls (on the loop thread)."""

    def workflow_entered(self, workflow_id: str) -> None: ...
    def workflow_exited(self, workflow_id: str) -> None: ...
    async def engine_shut_down(self) -> None: ...


class WorkflowEngine:
    def __init__(
        self,
        backend: Any = None,
        dry_run: bool = False,
        implicit_data: bool = True,
        uid: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        execution: str = "eager",
    ) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "WorkflowEngine must be created within an async context: use "
                "`flow = await WorkflowEngine.create(...)` inside a coroutine, or "
                "asyncflow_graph.compute(...) from a plain script"
            ) from None
        if execution not in ("eager", "lazy"):
            raise ConfigurationError(f"execution= must be 'eager' or 'lazy', got {execution!r}")
        self.uid = uid or f"asyncflow.session.{uuid.uuid4().hex[:8]}"
        self.work_dir = Path(work_dir) if work_dir is not None else Path(os.getcwd())
        self.dry_run = dry_run
        self.implicit_data_mode = implicit_data
        self.execution = execution
        backends = _normalize_backends(backend, dry_run)
        for b in backends:
            if hasattr(b, "implicit_data"):
                b.implicit_data = implicit_data
        self._default_backend_name = backends[0].name
        self._backends: dict[str, Backend] = {b.name: b for b in backends}
        self._executor = Executor(
            self.loop,
            engine_uid=self.uid,
            work_dir=self.work_dir / self.uid,
            block_runner=self._run_block,
        )
        self._executor.on_remote_pending = _fetch_on_await
        _share_nodes(backends, self._executor.state.nodes)
        self._graph = Graph()
        self._pending: dict[str, Node] = {}
        #: merged into the graph, not compiled yet: iterators over earlier turns' nodes
        self._backlog: collections.deque[Iterator[tuple[str, Node]]] = collections.deque()
        self._counter = itertools.count(1)
        self._scope: ContextVar[Scope | None] = ContextVar(
            f"asyncflow_graph.{self.uid}", default=None
        )
        self._future_type = LazyTaskFuture if execution == "lazy" else TaskFuture
        self._flush_scheduled = False
        self._compiling = False  # inside _compile_slice: a cancel must not flush
        self._precancelled: dict[str, Any] = {}
        self._closed = False
        self._start_failed = False
        self._shutdown_task: asyncio.Task[None] | None = None
        #: told of workflow scopes and of shutdown (telemetry: the workflow and
        #: session spans), see add_listener
        self._listeners: list[EngineListener] = []
        self._started = self.loop.create_task(self._start(backends))
        _watch_signals(self)

    @classmethod
    async def create(
        cls,
        backend: Any = None,
        dry_run: bool = False,
        implicit_data: bool = True,
        uid: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        execution: str = "eager",
    ) -> WorkflowEngine:
        engine = cls(backend, dry_run, implicit_data, uid, work_dir, execution)
        await engine._started
        return engine

    async def _start(self, backends: Sequence[Backend]) -> None:
        try:
            (self.work_dir / self.uid).mkdir(parents=True, exist_ok=True)
            await self._start_backends(backends)
        except BaseException:  # cancellation too: whatever started must be closed
            await self._abort_start()
            raise
        if self._pending:
            self._schedule_flush()

    async def _start_backends(self, backends: Sequence[Backend]) -> None:
        # Let every start run to its end: a backend still starting when another one
        # failed would otherwise finish after the clean-up and never be closed.
        results = await asyncio.gather(
            *(self._executor.add_backend(b) for b in backends), return_exceptions=True
        )
        for backend, result in zip(backends, results, strict=True):
            if isinstance(result, BaseException):
                # A note keeps the backend's own type and message but says which
                # backend failed (a bare "connection refused" does not).
                result.add_note(
                    f"raised while starting backend {backend.name!r} "
                    f"({type(backend).__name__}) of engine {self.uid}"
                )
                raise result

    async def _abort_start(self) -> None:
        """Undo a failed start: the engine can never run, so close the backends that
        did start (through the executor, as shutdown does), end every handle made
        meanwhile and stop answering signals for it."""
        self._closed = True
        self._start_failed = True  # a later shutdown() must not close them again
        self._pending = {}  # nothing may be compiled onto the half-started backends
        _unwatch_signals(self)
        await self._executor.close()
        self._cancel_unfinished(f"engine {self.uid} failed to start")

    # -- public properties ----------------------------------------------------------

    @property
    def backend(self) -> Any:
        """The default backend (the first one given), as the user passed it."""
        backend = self._backends[self._default_backend_name]
        return getattr(backend, "wrapped", backend)

    @property
    def backends(self) -> Mapping[str, Backend]:
        return dict(self._backends)

    @property
    def components(self) -> Mapping[str, Mapping[str, Any]]:
        """AsyncFlow's introspection mapping, read-only and built on demand:
        uid -> ``{"type", "description", "future"}`` for every handle the engine
        still holds (it keeps no handle alive for this)."""
        from .components import Components

        return Components(self._executor.futures)

    @property
    def graph(self) -> Graph:
        """Every task created so far, as an immutable graph."""
        self._merge_pending()
        return self._graph

    # -- decorators ---------------------------------------------------------------------

    def function_task(self, func: Any = None, /, **options: Any) -> Any:
        """``@flow.function_task`` or ``@flow.function_task(backend="gpu", ...)``."""
        return self._decorate(func, TaskKind.FUNCTION, options)

    def executable_task(self, func: Any = None, /, **options: Any) -> Any:
        return self._decorate(func, TaskKind.EXECUTABLE, options)

    def prompt_task(self, func: Any = None, /, **options: Any) -> Any:
        return self._decorate(func, TaskKind.PROMPT, options)

    def block(self, func: Any = None, /, **options: Any) -> Any:
        return self._decorate(func, TaskKind.BLOCK, options)

    def _decorate(self, func: Any, kind: TaskKind, options: dict[str, Any]) -> Any:
        if "service" in options and not isinstance(options["service"], bool):
            raise TypeError(f"service= must be True or False, got {options['service']!r}")
        if func is None:
            build_options(kind, options)  # unknown or bad options fail here, at decoration

            def decorate(f: Callable[..., Any]) -> TaskDefinition:
                return make_definition(self, f, kind, options)

            return decorate
        return make_definition(self, func, kind, options)

    @asynccontextmanager
    async def workflow_scope(self, workflow_id: str | None = None) -> AsyncIterator[str]:
        """Tag every task created inside with ``workflow_id`` (auto: ``wf-<hex>``)."""
        wid = workflow_id or f"wf-{uuid.uuid4().hex[:8]}"
        outer = self._scope.get()
        token = self._scope.set((wid, outer[1] if outer else None))
        self._tell("workflow_entered", wid)
        try:
            yield wid
        finally:
            self._scope.reset(token)
            self._tell("workflow_exited", wid)

    def _tell(self, event: str, wid: str) -> None:
        for listener in tuple(self._listeners):
            try:
                getattr(listener, event)(wid)
            except Exception:
                log.exception("engine listener %r failed on %s(%r)", listener, event, wid)

    # -- graph building (called by TaskDefinition) -------------------------------------

    def _add(self, node: Node) -> TaskFuture:
        if self._closed:
            raise EngineClosedError(
                f"engine {self.uid} has been shut down; create a new WorkflowEngine to run "
                f"{node.name!r}"
            )
        fut = self._future_type(loop=self.loop)
        fut.key = node.key
        fut.state = "PENDING"
        fut._engine = self
        self._executor.futures[node.key] = fut
        self._pending[node.key] = node
        if not self._flush_scheduled and self.execution == "eager":
            self._schedule_flush()
        return fut

    def _import(self, graph: Graph) -> dict[str, TaskFuture]:
        """Adopt the nodes of an unbound graph (the script face's compute())."""
        return {node.key: self._add(node) for node in graph.values()}

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        self.loop.call_soon(self._flush_turn)

    def _existing(self, key: str) -> TaskFuture | None:
        fut = self._executor.futures.get(key)
        return fut if isinstance(fut, TaskFuture) else None

    def _node(self, key: str) -> Node:
        node = self._pending.get(key) or self._executor.state.nodes.get(key)
        return node if node is not None else self.graph[key]

    def _all_nodes(self) -> Mapping[str, Node]:
        return self.graph

    def _merge_pending(self) -> None:
        """Bring nodes created this turn into ``self._graph`` (the call adds the node
        to the graph; eager mode keeps them pending too, for the end-of-turn compile)."""
        if self._pending:
            self._graph = self._graph.merge(self._pending.values())
            if self.execution == "lazy":
                self._pending = {}

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

    def _flush(self) -> None:
        """Compile and submit everything added so far, now (eager)."""
        if not self._compiles_now():
            return
        self._take_pending()
        while self._backlog:
            self._compile_slice()

    def _compiles_now(self) -> bool:
        return self._started.done() and not self._start_failed and self.execution == "eager"

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
                        self._executor.add_plan(self._compile(chunk), cancelled)
                finally:
                    self._compiling = False
                return

    def _compile(self, nodes: Mapping[str, Node]) -> Plan:
        return compile_plan(
            nodes,
            self._executor.capabilities,
            self._default_backend_name,
            pickles=_pickles,
            known=self._executor.state.nodes,
        )

    def _demand(self, key: str) -> None:
        """Lazy mode: compile and run ``key`` and its not-yet-run ancestors."""
        state = self._executor.state
        if self._start_failed or state.knows(key):
            return
        graph = self.graph
        needed: dict[str, Node] = {}
        todo = [key]
        while todo:
            k = todo.pop()
            if k in needed or state.knows(k):
                continue
            needed[k] = graph[k]
            todo.extend(graph[k].deps)
        if not self._started.done():
            self._started.add_done_callback(lambda _: self._demand(key))
            return
        cancelled = {k: self._precancelled.pop(k) for k in needed if k in self._precancelled}
        self._executor.add_plan(self._compile(needed), cancelled)

    async def _run_block(self, node: Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The block's tasks inherit its uid as workflow id and become its members.
        self._scope.set((node.key, node.key))
        return await node.func(*args, **kwargs)

    def _cancel(self, fut: TaskFuture, msg: Any) -> bool:
        if not self._executor.state.knows(fut.key) and not self._compiling:
            self._flush()  # eager: created this turn, or waiting in the backlog
        if not self._executor.state.knows(fut.key):
            # Not compiled (lazy: not demanded; eager: cancelled from inside a slice's
            # compile, e.g. by an observer): remember, so it and its dependents end
            # cancelled when compiled.
            self._precancelled[fut.key] = msg
            fut.state = "CANCELLED"
            return asyncio.Future.cancel(fut, msg)
        return self._executor.cancel(fut.key, msg)

    # -- inspection -----------------------------------------------------------------------

    def compile(self, *handles: TaskFuture) -> Plan:
        """The plan for ``handles`` (all tasks if none), without running anything."""
        graph = self.graph
        targets: Iterable[str] = [h.key for h in handles] if handles else list(graph)
        return self._compile(graph.cull(targets))

    def explain(self, *handles: TaskFuture) -> str:
        return self.compile(*handles).explain()

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        """Draw every task created so far (partitions as clusters; states after a run)."""
        return self._visualize(None, filename, **kwargs)

    def _visualize(self, keys: list[str] | None, filename: str | None, **kwargs: Any) -> Drawing:
        from .visualize import visualize

        graph = self.graph if keys is None else self.graph.cull(keys)
        return visualize(
            self._compile(graph), filename=filename, state=self._executor.state, **kwargs
        )

    def task_callbacks(
        self, task: Mapping[str, Any], state: str, service_callback: Any = None
    ) -> None:
        """AsyncFlow's backend callback: report ``state`` (``RUNNING``, ``DONE``,
        ``FAILED``, ``CANCELED``) of the task whose description is ``task``, with
        AsyncFlow's result rules. A report for an ended task is ignored."""
        from .backends.adapter import report_state

        del service_callback  # services are not run by this engine
        if not isinstance(state, str):
            raise TypeError(f"state must be a str such as 'DONE', got {state!r}")
        report_state(self._executor, str(task["uid"]), dict(task), state)

    # -- observability --------------------------------------------------------------------

    def add_observer(self, observer: RunObserver) -> None:
        """Attach a :class:`~asyncflow_graph.executor.events.RunObserver` to this
        engine's runs (telemetry, event logs and progress bars are observers)."""
        self._executor.add_observer(observer)

    def remove_observer(self, observer: RunObserver) -> None:
        self._executor.remove_observer(observer)

    def add_listener(self, listener: EngineListener) -> None:
        """Tell ``listener`` when a ``workflow_scope()`` is entered and left and,
        once, when the engine has shut down (telemetry ends its spans then)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EngineListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _tell_shutdown(self) -> None:
        for listener in tuple(self._listeners):
            try:
                await listener.engine_shut_down()
            except Exception:
                log.exception("engine listener %r failed at shutdown", listener)

    async def start_telemetry(self, *args: Any, **kwargs: Any) -> Any:
        """Start OpenTelemetry spans/metrics and AsyncFlow's telemetry events for this
        engine; see :func:`asyncflow_graph.telemetry.start_telemetry`. Needs the
        ``telemetry`` extra (``pip install asyncflow-graph[telemetry]``)."""
        from .telemetry import start_telemetry

        return await start_telemetry(self, *args, **kwargs)

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self, skip_execution_backend: bool = False, *, wait: bool = False) -> None:
        """Cancel unfinished tasks (or, with ``wait=True``, let them finish) and close
        every backend concurrently. Safe to call twice, and concurrently."""
        if self._shutdown_task is None:
            self._shutdown_task = self.loop.create_task(
                self._shutdown(skip_execution_backend, wait)
            )
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, skip_backends: bool, wait: bool) -> None:
        try:
            await self._shutdown_run(skip_backends, wait)
        finally:
            await self._tell_shutdown()

    async def _shutdown_run(self, skip_backends: bool, wait: bool) -> None:
        if not self._started.done():
            await asyncio.wait([self._started])
        if self._start_failed:
            return  # _abort_start already closed everything that had started
        self._flush_scheduled = False
        if self.execution == "eager":
            self._flush()
        else:
            self._merge_pending()
        self._closed = True
        if skip_backends:
            for key in self._executor.state.open_keys():
                self._executor.cancel(key, "engine shutdown")
            return
        await self._executor.close(cancel=not wait)
        # Lazy tasks never demanded end cancelled too: every future ends.
        self._cancel_unfinished("engine shutdown")

    def _cancel_unfinished(self, msg: str) -> None:
        for fut in self._executor.futures.values():
            if not fut.done():
                fut.state = "CANCELLED"  # type: ignore[attr-defined]
                asyncio.Future.cancel(fut, msg)

    async def __aenter__(self) -> WorkflowEngine:
        await self._started
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"<WorkflowEngine {self.uid} backends={list(self._backends)} {self.execution}>"


def _fetch_on_await(fut: asyncio.Future[Any]) -> None:
    # Same slots as every TaskFuture class, so the switch is safe and costs nothing
    # for handles that never hold a remote value.
    fut.__class__ = RemoteTaskFuture


def _pickles(obj: object) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception:
        return False
    return True


_REQUIRED_ASYNCFLOW = ("submit_tasks", "register_callback")

# One handler per loop and signal serves every engine on that loop (a second
# add_signal_handler would silently replace the first engine's).
_engines_by_loop: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakSet[WorkflowEngine]
] = weakref.WeakKeyDictionary()


def _watch_signals(engine: WorkflowEngine) -> None:
    """SIGINT/SIGTERM shut every engine on the loop down gracefully (main thread
    only). The handlers are then removed, so a second signal acts as usual."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = engine.loop
    engines = _engines_by_loop.get(loop)
    if engines is None:
        engines = _engines_by_loop[loop] = weakref.WeakSet()
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, _on_signal, loop, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # not a Unix loop, or not the main interpreter
    engines.add(engine)


def _unwatch_signals(engine: WorkflowEngine) -> None:
    """Forget ``engine`` (its start failed); when it was the loop's last engine, give
    SIGINT/SIGTERM back, or the next Ctrl-C would be swallowed with nothing to stop."""
    engines = _engines_by_loop.get(engine.loop)
    if engines is None:
        return
    engines.discard(engine)
    if engines:
        return
    del _engines_by_loop[engine.loop]
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            engine.loop.remove_signal_handler(sig)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # never installed (not a Unix loop, or not the main thread)


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    log.warning("received %s: shutting down every engine gracefully", sig.name)
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(s)
    for engine in list(_engines_by_loop.pop(loop, ())):
        loop.create_task(engine.shutdown())


def _share_nodes(backends: Sequence[Backend], nodes: Mapping[str, Node]) -> None:
    """AsyncFlow-style backends get the dependencies' descriptions in each task
    dict's metadata: their adapters read the compiled nodes."""
    from .backends.adapter import AsyncFlowBackendAdapter

    for b in backends:
        if isinstance(b, AsyncFlowBackendAdapter):
            b.known_nodes = nodes


def _normalize_backends(backend: Any, dry_run: bool) -> list[Backend]:
    from .backends.adapter import AsyncFlowBackendAdapter
    from .backends.asyncflow_api import asyncflow_overrides
    from .backends.local import LocalExecutionBackend
    from .backends.noop import NoopExecutionBackend

    if backend is None:
        if dry_run:
            return [NoopExecutionBackend()]
        log.warning("no backend given: using LocalExecutionBackend() (a thread pool)")
        return [LocalExecutionBackend()]
    items = list(backend) if isinstance(backend, list | tuple) else [backend]
    if not items:
        raise ConfigurationError("backend= is an empty list; pass at least one backend")
    out: list[Backend] = []
    for b in items:
        if isinstance(b, Backend):
            # A subclass overriding AsyncFlow's API (submit_tasks, cancel_task, ...)
            # is driven through it, so the override is what runs.
            out.append(AsyncFlowBackendAdapter(b) if asyncflow_overrides(b) else b)
        elif all(callable(getattr(b, m, None)) for m in _REQUIRED_ASYNCFLOW):
            out.append(AsyncFlowBackendAdapter(b))
        else:
            missing = [m for m in _REQUIRED_ASYNCFLOW if not callable(getattr(b, m, None))]
            raise ConfigurationError(
                f"{b!r} is not a backend: it lacks {', '.join(missing)}. Pass an "
                f"asyncflow_graph backend (LocalExecutionBackend, ...) or an AsyncFlow-style "
                f"object with submit_tasks(tasks) and register_callback(func)"
            )
    names = [b.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(
            f"backend names must be unique, {', '.join(map(repr, dupes))} is used more than "
            f"once; give each backend its own name= (e.g. LocalExecutionBackend(name='cpu'))"
        )
    return out

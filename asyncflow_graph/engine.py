"""``WorkflowEngine``: the AsyncFlow-compatible face, a thin layer over the
executor (which owns every piece of run state) and the backends. Eager mode
(AsyncFlow's) compiles the nodes of a loop turn at its end; lazy mode (Dask's)
compiles a handle's ancestors when it is awaited (:mod:`.executor.intake`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import signals
from .backends.adapter import share_nodes
from .backends.choose import normalize_backends
from .compiler import Plan
from .decorators import TaskDefinition, build_options, make_definition
from .errors import ConfigurationError
from .executor import Executor, Intake, RunObserver, RunView
from .executor.closing import release_claims
from .graph import Graph
from .handle import LazyTaskFuture, RemoteTaskFuture, TaskFuture, report_once
from .listeners import EngineListener, Listeners
from .protocol import Backend
from .spec import Node, TaskKind

if TYPE_CHECKING:
    from .cache import CacheRun
    from .visualize import Drawing

__all__ = ["WorkflowEngine"]


class WorkflowEngine:
    def __init__(
        self,
        backend: Any = None,
        dry_run: bool = False,
        implicit_data: bool = True,
        uid: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        execution: str = "eager",
        cache: Any = None,
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
        backends = normalize_backends(backend, dry_run)
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
        self._executor.remote.on_pending = _fetch_on_await
        self._executor.handles.on_failed = report_once
        share_nodes(backends, self._executor.state.nodes)
        handle_type = LazyTaskFuture if execution == "lazy" else TaskFuture
        self._intake = Intake(
            self._executor,
            default_backend=self._default_backend_name,
            lazy=execution == "lazy",
            handle_type=handle_type,
        )
        self._shutdown_task: asyncio.Task[None] | None = None
        self._listeners = Listeners()  # workflow scopes and shutdown, see add_listener
        self._cache_option, self._cache = cache, cast("CacheRun | None", None)
        if cache is not None and cache is not False:
            self._open_cache()
        self._started = self.loop.create_task(self._start(backends))
        signals.watch(self)

    @classmethod
    async def create(
        cls,
        backend: Any = None,
        dry_run: bool = False,
        implicit_data: bool = True,
        uid: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        execution: str = "eager",
        cache: Any = None,
    ) -> WorkflowEngine:
        engine = cls(backend, dry_run, implicit_data, uid, work_dir, execution, cache)
        await engine._started
        return engine

    async def _start(self, backends: Sequence[Backend]) -> None:
        try:
            (self.work_dir / self.uid).mkdir(parents=True, exist_ok=True)
            await self._start_backends(backends)
        except BaseException:  # cancellation too: whatever started must be closed
            await self._abort_start()
            raise
        self._intake.start()

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
        self._intake.abort()
        signals.unwatch(self)
        await self._executor.close(msg=f"engine {self.uid} failed to start")

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

        return Components(self._executor.handles.mapping())

    @property
    def graph(self) -> Graph:
        """Every task created so far, as an immutable graph."""
        return self._intake.graph

    @property
    def run_view(self) -> RunView:
        """A read-only view of the run: each task's state, error and duration."""
        return self._executor.view

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
        if options.get("cache") and self._cache_option is not False:
            self._open_cache()
        if "service" in options and not isinstance(options["service"], bool):
            raise TypeError(f"service= must be True or False, got {options['service']!r}")
        if func is None:
            build_options(kind, options)  # unknown or bad options fail here, at decoration

            def decorate(f: Callable[..., Any]) -> TaskDefinition:
                return make_definition(self._intake, f, kind, options)

            return decorate
        return make_definition(self._intake, func, kind, options)

    @asynccontextmanager
    async def workflow_scope(self, workflow_id: str | None = None) -> AsyncIterator[str]:
        """Tag every task created inside with ``workflow_id`` (auto: ``wf-<hex>``)."""
        wid = workflow_id or f"wf-{uuid.uuid4().hex[:8]}"
        scope = self._intake.scope
        outer = scope.get()
        token = scope.set((wid, outer[1] if outer else None))
        self._listeners.entered(wid)
        try:
            yield wid
        finally:
            scope.reset(token)
            self._listeners.exited(wid)

    async def _run_block(self, node: Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The block's tasks inherit its uid as workflow id and become its members.
        self._intake.scope.set((node.key, node.key))
        return await node.func(*args, **kwargs)

    def add_graph(self, graph: Graph) -> dict[str, TaskFuture]:
        """Run the nodes of an unbound graph (what the script face's ``compute()``
        does); returns their handles by key."""
        if self._cache_option is not False and any(n.options.cache for n in graph.values()):
            self._open_cache()
        return self._intake.adopt(graph)  # type: ignore[return-value]

    @property
    def cache(self) -> CacheRun:
        """This engine's result cache (``flow.cache.stats()``), opened when first needed."""
        return self._open_cache()

    def _open_cache(self) -> CacheRun:
        if self._cache is None:
            from .cache import open_cache

            self._cache = open_cache(
                self._cache_option, self.work_dir, self._executor, self._intake
            )
        return self._cache

    # -- inspection -----------------------------------------------------------------------

    def compile(self, *handles: TaskFuture) -> Plan:
        """The plan for ``handles`` (all tasks if none), without running anything."""
        return self._intake.plan_for([h.key for h in handles] if handles else None)

    def explain(self, *handles: TaskFuture) -> str:
        return self.compile(*handles).explain()

    def visualize(self, filename: str | None = None, **kwargs: Any) -> Drawing:
        """Draw every task created so far (partitions as clusters; states after a run)."""
        from .visualize import visualize

        return visualize(self.compile(), filename=filename, state=self.run_view, **kwargs)

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
        self._listeners.add(listener)

    def remove_listener(self, listener: EngineListener) -> None:
        self._listeners.remove(listener)

    async def start_telemetry(self, *args: Any, **kwargs: Any) -> Any:
        """Start OpenTelemetry spans/metrics and AsyncFlow's telemetry events for this
        engine; see :func:`asyncflow_graph.telemetry.start_telemetry`. Needs the
        ``telemetry`` extra (``pip install asyncflow-graph[telemetry]``)."""
        from .telemetry import start_telemetry

        return await start_telemetry(self, *args, **kwargs)

    # -- shutdown -------------------------------------------------------------------------

    async def settle(self, timeout: float | None = None) -> None:
        """Wait until every backend has confirmed the cancels made so far: a
        cancel returns at once, while a remote backend's cancel is a message to its
        scheduler that may take a round trip to be acted on."""
        await self._executor.settle(timeout)

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
            signals.unwatch(self)  # the loop's last engine gives the signals back
            await self._listeners.shut_down()

    async def _shutdown_run(self, skip_backends: bool, wait: bool) -> None:
        if not self._started.done():
            await asyncio.wait([self._started])
        if self._intake.dead:
            return  # _abort_start already closed everything that had started
        self._intake.close()
        if skip_backends:
            self._executor.cancel_open("engine shutdown")
            release_claims(self._executor, closed=False)
            return
        await self._executor.close(cancel=not wait)

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

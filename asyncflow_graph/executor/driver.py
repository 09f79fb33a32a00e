"""The async driver around :class:`RunState`: it carries out the state's
instructions and decides nothing itself.

It turns compiled plans into backend submissions the moment a unit's inputs are
ready (no polling, no sleeps), runs executable/prompt builders and block bodies on
the engine's loop, resolves the handles' futures, and implements the backend
:class:`~asyncflow_graph.protocol.Reporter` interface. Every method runs on the
event-loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from sys import getrefcount
from typing import Any

from ..compiler.plan import Plan
from ..errors import BackendError
from ..protocol import (
    ENGINE_BACKEND,
    Backend,
    BackendContext,
    Capabilities,
    Command,
    Outcome,
    Remote,
    TaskState,
    Work,
)
from ..spec import EMPTY_MAPPING, Node, TaskKind, bind
from . import claims, closing
from .builders import Builders
from .endings import resolve_ended
from .events import RunObserver, RunView
from .faults import internal_error, log_retry, stop_iteration_error
from .handles import Handles
from .inflight import InFlight
from .instructions import (
    ENDED,
    Ended,
    Instruction,
    Job,
    Ready,
    RetryAfter,
    StopTail,
    StopWork,
)
from .looptasks import LoopTasks
from .observers import Observers
from .remote import RemoteValues
from .retention import Retention
from .state import RunState
from .view import ExecutorView

__all__ = ["BlockRunner", "Executor"]

log = logging.getLogger("asyncflow_graph")

BlockRunner = Callable[[Node, tuple[Any, ...], dict[str, Any]], Coroutine[Any, Any, Any]]


class Executor:
    """Drives one engine's runs: plans in, backend submissions and futures out."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        engine_uid: str,
        work_dir: Path,
        block_runner: BlockRunner,
    ) -> None:
        self.loop = loop
        self.engine_uid = engine_uid
        self.work_dir = work_dir
        claims.claim_directory(work_dir, engine_uid, self)
        self.state = RunState()
        self.backends: dict[str, Backend] = {}
        self.capabilities: dict[str, Capabilities] = {}
        self.retention = Retention(loop, self.state)
        self.handles = Handles(self.retention.dropped)  # made by the intake, resolved here
        self.futures = self.handles.open
        self._open_jobs = self.state.open_jobs  # key -> job (read only)
        self._done_unheld = self.retention.done_unheld  # appended to per key done
        self._done_held = self.retention.done_held
        self.observers = Observers()
        self.inflight = InFlight(loop, self.backends, self.spawn)
        self.view: RunView = ExecutorView(self.state, self.inflight.works)
        self.remote = RemoteValues(self.backends)
        self.builders = Builders(self)
        self._block_runner = block_runner
        self.loop_tasks = LoopTasks(loop, self)  # block bodies and builders, by key
        #: key -> the command / prompt its builder made (shown in its description)
        self.payloads: dict[str, Command | str] = {}
        self.retention.hooks.append(self._let_go)
        self._background: set[asyncio.Task[Any]] = set()
        #: while ended() records a batch: jobs made ready, dispatched after it
        self._held: list[Job] | None = None
        self.submit_gate: Callable[[str, list[Work]], list[Work]] | None = None  # the cache's

    # -- set-up ---------------------------------------------------------------------------

    async def add_backend(self, backend: Backend) -> None:
        context = BackendContext(self.engine_uid, self.work_dir, self.loop, self)
        claims.claim_backend(backend, self.engine_uid)
        try:
            await backend.start(context)
        except BaseException:
            claims.release_backend(backend, self.engine_uid, closed=False)
            raise
        self.backends[backend.name] = backend
        self.capabilities[backend.name] = caps = backend.capabilities
        if caps.handles_retries:
            self.state.backend_retries.add(backend.name)
        log.info("backend %r (%s) started", backend.name, type(backend).__name__)

    def add_observer(self, observer: RunObserver) -> None:
        observer.on_attach(self.view)
        self.observers.add(observer)

    def remove_observer(self, observer: RunObserver) -> None:
        self.observers.remove(observer)

    # -- plans and instructions -----------------------------------------------------------

    def add_plan(self, plan: Plan, cancelled: Mapping[str, Any] = EMPTY_MAPPING) -> None:
        """Register a compiled batch and submit whatever is ready; keys in
        ``cancelled`` were cancelled before they were compiled."""
        if self.observers.all:
            self.observers.notify("on_plan", plan)
        self._carry_out(self.state.add(plan.nodes, plan.units, plan.errors, cancelled))

    def _carry_out(self, instructions: Sequence[Instruction]) -> None:
        for ins in instructions:
            if type(ins) is Ready:
                if ins.later:
                    self.loop.call_soon(self._dispatch_open, ins.jobs)
                elif self._held is not None:
                    self._held.extend(ins.jobs)
                else:
                    self._dispatch(ins.jobs)
            elif type(ins) is Ended:
                resolve_ended(self, ins.keys)
            elif type(ins) is RetryAfter:
                self._retry(ins)
            elif type(ins) is StopWork:
                self.inflight.stop_timed_out(ins.key)
            elif type(ins) is StopTail:
                self.inflight.stop_tail(ins.head, ins.key)

    def _dispatch(self, jobs: list[Job]) -> None:
        nodes, values = self.state.nodes, self.state.values
        remote = self.remote
        if remote:
            values = remote.view(values)  # type: ignore[assignment]
        batches: dict[str, list[Work]] = {}
        for job in jobs:
            unit = job.unit
            try:  # free unless it raises: an error here ends this job alone
                head = nodes[unit.keys[0]]
                kind = head.kind
                if remote and self._fetch_first(job, head):
                    continue
                if kind is TaskKind.BLOCK:
                    self._start_block(head)
                    continue
                inputs = {d: values[d] for d in unit.inputs} if unit.inputs else EMPTY_MAPPING
                chain = (head,) if len(unit.keys) == 1 else tuple(nodes[k] for k in unit.keys)
                work = Work(unit, chain, inputs)
                if kind is TaskKind.FUNCTION or not self.capabilities[unit.backend].executes_code:
                    batch = batches.get(unit.backend)
                    if batch is None:
                        batches[unit.backend] = [work]
                    else:
                        batch.append(work)
                else:
                    # The timeout counts from here: the builder is part of the task.
                    self.inflight.arm_node(head, partial(self._timed_out, job))
                    self.builders.build(head, work)
            except Exception as exc:
                head_key = unit.keys[0]
                self.failed(head_key, internal_error(self.state, head_key, "dispatched", exc))
        for name, works in batches.items():
            self.submit(name, works)

    def _fetch_first(self, job: Job, head: Node) -> bool:
        """Fetch the remote inputs ``job`` cannot use as they are, then dispatch it
        (unless it ended meanwhile). False when there is nothing to fetch."""
        missing = self.remote.missing_for(head, job.unit)
        if not missing:
            return False
        self.spawn(self.remote.fetch_then(missing, partial(self._fetched, job)))
        return True

    def _fetched(self, job: Job, error: BaseException | None) -> None:
        head = job.unit.keys[0]
        if error is not None:
            self.failed(head, error)
        elif self.state.job_of(head) is job:  # not cancelled meanwhile
            self._dispatch([job])

    def submit(self, name: str, works: list[Work]) -> None:
        """Hand ``works`` (ready, builders run) to backend ``name``."""
        if self.submit_gate is not None and not (works := self.submit_gate(name, works)):
            return
        inflight, in_flight = self.inflight, self.inflight.works
        for w in works:  # inlined: once per submission on the hot path
            unit = w.unit
            if unit.graph:  # each key of a graph unit ends on its own
                for k in unit.keys:
                    in_flight[k] = w
            in_flight[unit.keys[0]] = w
            # A task with a timeout is alone in its unit (the fusion rule): its timer
            # starts at its submission (or its builder's start, armed already).
            timeout = w.nodes[0].options.timeout
            if timeout is not None:
                job = self.state.job_of(unit.keys[0])
                if job is not None:
                    inflight.arm(unit.keys[0], timeout, partial(self._timed_out, job))
        if self.observers.all:
            self.observers.notify("on_submitted", name, [w.unit for w in works])
        try:
            self.backends[name].submit(works)
        except Exception as exc:
            log.exception("backend %r failed to accept %d submissions", name, len(works))
            for w in works:
                self.failed(w.key, BackendError(f"backend {name!r} failed to submit: {exc!r}"))

    # -- blocks -------------------------------------------------------------------------

    def _start_block(self, node: Node) -> None:
        args, kwargs = bind(node, self.remote.view(self.state.values))
        fut = self.handles.get(node.key)
        if fut is not None:
            fut.state = TaskState.RUNNING  # type: ignore[attr-defined]
        self.state.running(node.key)
        job = self.state.job_of(node.key)
        if job is not None:
            self.inflight.arm_node(node, partial(self._timed_out, job))
        if self.observers.all:
            if job is not None:
                self.observers.notify("on_submitted", ENGINE_BACKEND, [job.unit])
            self.observers.notify("on_running", node.key)
        self.loop_tasks.run_body(node.key, self._block_runner(node, args, kwargs))

    # -- Reporter: backend events -------------------------------------------------------

    def running(self, key: str) -> None:
        self.state.running(key)
        if self.observers.on_running:
            self.observers.running(key)
        fut = self.futures.get(key)
        if fut is not None and not fut.done():
            fut.state = TaskState.RUNNING  # type: ignore[attr-defined]

    def done(self, key: str, value: Any) -> None:
        job = self._open_jobs.get(key)
        if job is None:
            return  # a late result of a cancelled or timed-out task
        ready = self.state.done(key, value)
        unit = job.unit
        if unit.graph:
            self.inflight.works.pop(key, None)
        elif job.status == ENDED:
            self.inflight.finish(unit.keys[0])
        if self.observers.on_done:
            self.observers.done(key, value)
        remote = type(value) is Remote
        fut = self.futures.pop(key, None)
        if fut is None:
            held = key in self.handles.refs
        else:
            if not fut.done():
                fut.state = TaskState.DONE  # type: ignore[attr-defined]
                if remote:
                    self.remote.hold(key, value, fut)
                else:
                    fut.set_result(value)
            held = getrefcount(fut) > 2  # more than this variable and the call's argument
            if held:
                self.handles.watch(key, fut)
            del fut
        if remote and key not in self.remote.refs:
            self.remote.refs[key] = value
        if not held:  # nobody else holds the handle: nobody ever will again
            self._done_unheld.append(key)
        elif unit.inputs or len(unit.keys) > 1:  # it has dependencies (values to let go of)
            self._done_held.append(key)
        if ready is not None:
            if self._held is not None:
                self._held.extend(ready.jobs)
            else:
                self._dispatch(ready.jobs)
        if self._held is None:  # a report of its own (not in ended())
            self.retention.done()

    def ended(self, outcomes: Iterable[Outcome]) -> None:
        # Hold what becomes ready until every outcome is recorded: one submission
        # per backend for the lot, not one per finished key. Observers hear of the
        # keys done in one on_done_many call, before any dependent is submitted.
        outer, self._held = self._held, []
        outer_batch = self.observers.open_batch()
        try:
            for key, ok, value in outcomes:
                if ok:
                    self.done(key, value)
                else:
                    self.failed(key, value)
        finally:
            held, self._held = self._held, outer
            self.observers.close_batch(outer_batch)
        if held:
            self._dispatch_open(held)  # skips any cancelled meanwhile
        if outer is None:  # once for the batch: what to let go of
            self.retention.done()

    def failed(self, key: str, exc: BaseException) -> None:
        job = self.state.job_of(key)
        if job is None:
            return
        if isinstance(exc, StopIteration):  # a future refuses it (it would end a generator)
            exc = stop_iteration_error(self.state.nodes[key], exc)
        # A graph unit's other keys may still be running: only this key's work ends.
        self.inflight.finish(key if job.unit.graph else job.unit.keys[0])
        self._carry_out(self.state.fail(key, exc))

    def cancelled(self, key: str, msg: str | None = None) -> None:
        if self.state.is_open(key):
            self._carry_out(self.state.cancel(key, msg))

    def _retry(self, ins: RetryAfter) -> None:
        log_retry(self.state.nodes[ins.key], ins)
        if ins.delay > 0:
            self.loop.call_later(ins.delay, self._dispatch_open, [ins.job])
        else:
            self._dispatch([ins.job])

    def _dispatch_open(self, jobs: list[Job]) -> None:
        job_of = self.state.job_of
        jobs = [j for j in jobs if job_of(j.unit.keys[0]) is j]
        if jobs:
            self._dispatch(jobs)

    def fetch_for_handle(self, key: str) -> None:
        """Fetch ``key``'s remote value and resolve its handle future."""
        self.remote.resolve_handle(key, self.handles.get(key))

    def _timed_out(self, job: Job) -> None:
        self.inflight.timer_fired(job.unit.keys[0])
        self._carry_out(self.state.time_out(job))

    # -- ending -------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel(self, key: str, msg: str | None = None) -> bool:
        """Cancel ``key``'s work and every dependent. False when it already ended."""
        if not self.state.is_open(key):
            return False
        self._carry_out(self.state.cancel(key, msg))
        return True

    async def close(
        self, *, cancel: bool = True, timeout: float = 30.0, msg: str = "engine shutdown"
    ) -> None:
        """Shut the run down (:func:`.closing.close`): every future ends."""
        await closing.close(self, cancel=cancel, timeout=timeout, msg=msg)

    async def settle(self, timeout: float | None = None) -> None:
        """Wait until the backends confirmed every cancel made so far (and the
        other background work the executor started)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    def cancel_open(self, msg: str) -> None:
        """Cancel every open key, leaving the backends running."""
        for key in self.state.open_keys():
            self.cancel(key, msg)

    def cancel_unfinished(self, msg: str) -> None:
        for key in list(self.futures):  # never compiled (lazy): no run state ends them
            self.handles.cancel(key, msg)
            self.handles.ended(key)

    def _let_go(self, released: list[str], forgotten: list[str]) -> None:
        """The run let go of these keys' values (or forgot them): so does the executor."""
        if self.payloads or self.remote:
            for keys in (released, forgotten):
                for key in keys:
                    self.payloads.pop(key, None)
                    self.remote.forget(key)
        if self.handles.refs:  # a handle made again for a key, then dropped
            self.handles.let_go(forgotten)

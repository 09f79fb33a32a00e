"""The async driver around :class:`RunState`: the one place with mutable run state.

It turns compiled plans into backend submissions the moment a unit's inputs are
ready (no polling, no sleeps), runs executable/prompt builders and block bodies on
the engine's loop, resolves the handles' futures, and implements the backend
:class:`~asyncflow_graph.backends.base.Reporter` interface. Every method runs on the
event-loop thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

from ..backends.base import Backend, BackendContext, Outcome, Remote, Work
from ..compiler.plan import ENGINE_BACKEND, Capabilities, Plan
from ..errors import BackendError, DependencyFailureError, TaskTimeoutError
from ..spec import EMPTY_MAPPING, Node, TaskKind, substitute
from .builders import first_step, make_payload
from .events import HOOKS, RunObserver, overridden
from .remote import RemoteValues
from .state import ENDED, Job, RunState

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
        self.state = RunState()
        self.backends: dict[str, Backend] = {}
        self.capabilities: dict[str, Capabilities] = {}
        self.futures: dict[str, asyncio.Future[Any]] = {}
        self._block_runner = block_runner
        self._running: dict[str, Work] = {}  # head key -> work a backend holds
        self._tasks: dict[str, asyncio.Task[Any]] = {}  # head key -> block body / builder
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._members: dict[str, list[str]] = {}  # block key -> keys its body created
        self._background: set[asyncio.Task[Any]] = set()
        self._started_at: dict[str, float] = {}  # key -> perf_counter() at RUNNING
        self.remote = RemoteValues(self.backends)
        #: called with a handle future whose value stayed remote and that nobody
        #: awaits yet (the engine makes awaiting it fetch the value)
        self.on_remote_pending: Callable[[asyncio.Future[Any]], None] | None = None
        #: attached RunObservers; empty (falsy) keeps every hook to one test
        self.observers: tuple[RunObserver, ...] = ()
        self._hooks: dict[str, tuple[Callable[..., Any], ...]] = dict.fromkeys(HOOKS, ())
        self._on_running: tuple[Callable[[str], Any], ...] = ()  # the two per-key hooks
        self._on_done: tuple[Callable[[str, Any], Any], ...] = ()
        self._on_done_many: tuple[Callable[[list[tuple[str, Any]]], Any], ...] = ()
        #: while ended() records a batch (and someone observes on_done): the keys
        #: done so far, told to the observers in one call per observer
        self._done_batch: list[tuple[str, Any]] | None = None
        self.closed = False
        #: while ended() records a batch: jobs made ready, dispatched after it
        self._held: list[Job] | None = None

    # -- observers ----------------------------------------------------------------------

    def add_observer(self, observer: RunObserver) -> None:
        observer.on_attach(self)
        self._set_observers((*self.observers, observer))

    def remove_observer(self, observer: RunObserver) -> None:
        self._set_observers(tuple(o for o in self.observers if o is not observer))

    def _set_observers(self, observers: tuple[RunObserver, ...]) -> None:
        self.observers = observers
        # Bound methods of the hooks each observer overrides, looked up once here:
        # a hook nobody overrides costs nothing per key.
        self._hooks = {
            h: tuple(getattr(o, h) for o in observers if overridden(o, h)) for h in HOOKS
        }
        self._on_running = self._hooks["on_running"]
        # Batches go to on_done_many; an observer that overrides only one of the two
        # hooks gets the other built from it, each key's call failing on its own.
        one: list[Callable[[str, Any], Any]] = []
        many: list[Callable[[list[tuple[str, Any]]], Any]] = []
        for o in observers:
            if overridden(o, "on_done_many"):
                many.append(o.on_done_many)
                one.append(o.on_done if overridden(o, "on_done") else partial(_one, o))
            elif overridden(o, "on_done"):
                many.append(partial(_each, o.on_done))
                one.append(o.on_done)
        self._on_done, self._on_done_many = tuple(one), tuple(many)

    def _notify(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            try:
                fn(*args)
            except Exception:
                _observer_failed(fn, hook)

    # -- RunView: what observers may read -------------------------------------------------

    @property
    def durations(self) -> Mapping[str, float]:
        return self.state.durations

    def live_counts(self) -> dict[str, tuple[int, int]]:
        # Snapshots first (one C-level copy each): a metric reader's thread may
        # call this while the loop thread changes the dicts.
        works = list(self._running.values())
        started = set(self._started_at)
        job_of, is_open = self.state.job_of, self.state.is_open
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        seen: set[int] = set()
        for w in works:
            if id(w) in seen:  # a graph unit is there once per key
                continue
            seen.add(id(w))
            n = sum(1 for k in w.unit.keys if is_open(k) and k not in started)
            queued[w.unit.backend] = queued.get(w.unit.backend, 0) + n
        for k in started:
            job = job_of(k)
            if job is not None:
                running[job.unit.backend] = running.get(job.unit.backend, 0) + 1
        return {b: (queued.get(b, 0), running.get(b, 0)) for b in {*queued, *running}}

    # -- backends ---------------------------------------------------------------------

    async def add_backend(self, backend: Backend) -> None:
        context = BackendContext(self.engine_uid, self.work_dir, self.loop, self)
        await backend.start(context)
        self.backends[backend.name] = backend
        self.capabilities[backend.name] = backend.capabilities
        log.info("backend %r (%s) started", backend.name, type(backend).__name__)

    # -- plans --------------------------------------------------------------------------

    def add_plan(self, plan: Plan, cancelled: Mapping[str, Any] = EMPTY_MAPPING) -> None:
        """Register a compiled batch and submit whatever is ready; keys in
        ``cancelled`` were cancelled before they were compiled."""
        state = self.state
        late: dict[str, Any] = {}
        for key, node in plan.nodes.items():
            block = node.parent
            if block is None:
                continue
            if block in state.cancelled or block in state.failures:
                # compiled after its block ended (it waited in the engine's backlog):
                # it ends as the block's other members did
                late[key] = state.cancelled.get(block)
            else:
                self._members.setdefault(block, []).append(key)
        if late:
            cancelled = {**cancelled, **late}
        if self.observers:
            self._notify("on_plan", plan)
        ready, ended = self.state.add(plan.nodes, plan.units, plan.errors, cancelled)
        if ended:
            self._resolve_ended(ended)
        if ready:
            self._dispatch(ready)

    def _dispatch(self, jobs: list[Job]) -> None:
        nodes, values = self.state.nodes, self.state.values
        remote = self.remote
        if remote:
            values = remote.view(values)  # type: ignore[assignment]
        batches: dict[str, list[Work]] = {}
        for job in jobs:
            unit = job.unit
            head = nodes[unit.keys[0]]
            kind = head.kind
            if remote and self._fetch_first(job, head):
                continue
            if kind is TaskKind.BLOCK:
                self._start_block(head)
                continue
            inputs = {d: values[d] for d in unit.inputs} if unit.inputs else EMPTY_MAPPING
            chain = (head,) if len(unit.keys) == 1 else tuple(nodes[k] for k in unit.keys)
            if kind is TaskKind.FUNCTION or not self.capabilities[unit.backend].executes_code:
                work = Work(unit, chain, inputs)
                batch = batches.get(unit.backend)
                if batch is None:
                    batches[unit.backend] = [work]
                else:
                    batch.append(work)
            else:
                self._build(head, Work(unit, chain, inputs))
        for name, works in batches.items():
            self._submit(name, works)

    def _fetch_first(self, job: Job, head: Node) -> bool:
        """Fetch the remote inputs ``job`` cannot use as they are, then dispatch it.
        False when there is nothing to fetch."""
        unit = job.unit
        here = head.kind is not TaskKind.FUNCTION  # builders and block bodies run here
        missing = self.remote.missing(
            head.deps if head.kind is TaskKind.BLOCK else unit.inputs,
            None if here else unit.backend,
        )
        if not missing:
            return False
        self._spawn(self._fetch_then_dispatch(job, missing))
        return True

    async def _fetch_then_dispatch(self, job: Job, keys: list[str]) -> None:
        head = job.unit.keys[0]
        try:
            await asyncio.gather(*(self.remote.fetch(k) for k in keys))
        except Exception as exc:
            names = ", ".join(self.state.nodes[k].name for k in keys)
            self.failed(head, BackendError(f"could not fetch the results of {names}: {exc!r}"))
            return
        if self.state.job_of(head) is job:  # not cancelled meanwhile
            self._dispatch([job])

    def _submit(self, name: str, works: list[Work]) -> None:
        running = self._running
        for w in works:
            if w.unit.graph:  # each key of a graph unit ends on its own
                for k in w.unit.keys:
                    running[k] = w
            running[w.unit.keys[0]] = w
            timeout = w.nodes[0].options.timeout
            if timeout is not None:
                self._timers[w.key] = self.loop.call_later(timeout, self._timed_out, w)
        if self.observers:
            self._notify("on_submitted", name, [w.unit for w in works])
        try:
            self.backends[name].submit(works)
        except Exception as exc:
            log.exception("backend %r failed to accept %d submissions", name, len(works))
            for w in works:
                self.failed(w.key, BackendError(f"backend {name!r} failed to submit: {exc!r}"))

    # -- builders and blocks ------------------------------------------------------------

    def _build(self, node: Node, work: Work) -> None:
        """Run an executable/prompt builder with resolved inputs, then submit."""
        args, kwargs = self._bind(node, work.inputs)
        try:
            if inspect.iscoroutinefunction(node.func):
                # First step here, in creation order (a builder that never suspends
                # costs no Task and no loop turn); only one that suspends gets a Task.
                out, rest = first_step(node.func(*args, **kwargs))
                if rest is not None:
                    task = self.loop.create_task(rest[0], context=rest[1])
                    self._tasks[node.key] = task
                    task.add_done_callback(partial(self._built, node, work))
                    return
            else:
                out = node.func(*args, **kwargs)
        except Exception as exc:
            self.failed(node.key, exc)
            return
        self._submit_built(node, work, out)

    def _built(self, node: Node, work: Work, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(node.key, None)
        if task.cancelled():
            return  # cancel() already ended the key
        exc = task.exception()
        if exc is not None:
            self.failed(node.key, exc)
        else:
            self._submit_built(node, work, task.result())

    def _submit_built(self, node: Node, work: Work, out: Any) -> None:
        if not self.state.is_open(node.key):
            return
        try:
            payload = make_payload(node, out, self.work_dir)
        except Exception as exc:
            self.failed(node.key, exc)
            return
        fut = self.futures.get(node.key)
        if fut is not None:
            fut._payload = payload  # type: ignore[attr-defined] # its description shows it
        self._submit(work.unit.backend, [Work(work.unit, work.nodes, work.inputs, payload)])

    def _start_block(self, node: Node) -> None:
        args, kwargs = self._bind(node, self.remote.view(self.state.values))
        fut = self.futures.get(node.key)
        if fut is not None:
            fut.state = "RUNNING"  # type: ignore[attr-defined]
        self._started_at[node.key] = perf_counter()
        if self.observers:
            job = self.state.job_of(node.key)
            if job is not None:
                self._notify("on_submitted", ENGINE_BACKEND, [job.unit])
            self._notify("on_running", node.key)
        task = self.loop.create_task(self._block_runner(node, args, kwargs))
        self._tasks[node.key] = task
        task.add_done_callback(partial(self._block_finished, node.key))

    def _block_finished(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(key, None)
        if task.cancelled():
            self.cancelled(key, _cancel_message(task))
            return
        exc = task.exception()
        if exc is not None:
            self.failed(key, exc)
        else:
            self.done(key, task.result())

    @staticmethod
    def _bind(node: Node, values: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not node.deps:
            return node.args, dict(node.kwargs)
        return substitute(node.args, node.kwargs, values, node.deep)

    # -- Reporter: backend events -------------------------------------------------------

    def running(self, key: str) -> None:
        self._started_at[key] = perf_counter()
        # _notify() inlined here and in done(): these two run once per key
        for fn in self._on_running:
            try:
                fn(key)
            except Exception:
                _observer_failed(fn, "on_running")
        fut = self.futures.get(key)
        if fut is not None and not fut.done():
            fut.state = "RUNNING"  # type: ignore[attr-defined]

    def done(self, key: str, value: Any) -> None:
        state = self.state
        job = state.job_of(key)
        if job is None:
            return  # a late result of a cancelled or timed-out task
        ready = state.done(key, value)
        self._record_duration(key)
        if job.unit.graph:
            self._running.pop(key, None)
        elif job.status == ENDED:
            self._finish_work(job.unit.keys[0])
        batch = self._done_batch
        if batch is not None:
            batch.append((key, value))
        else:
            for fn in self._on_done:
                try:
                    fn(key, value)
                except Exception:
                    _observer_failed(fn, "on_done")
        fut = self.futures.get(key)
        if fut is not None and not fut.done():
            fut.state = "DONE"  # type: ignore[attr-defined]
            if type(value) is Remote:
                self._hold_remote(key, value, fut)
            else:
                fut.set_result(value)
        elif type(value) is Remote:
            self.remote.refs[key] = value
        if ready:
            if self._held is not None:
                self._held.extend(ready)
            else:
                self._dispatch(ready)

    def ended(self, outcomes: Iterable[Outcome]) -> None:
        # Hold what becomes ready until every outcome is recorded: one submission
        # per backend for the lot, not one per finished key. Observers hear of the
        # keys done in one on_done_many call, before any dependent is submitted.
        self._tell_done()  # a report nested in another: the outer keys come first
        outer, self._held = self._held, []
        outer_batch, self._done_batch = self._done_batch, [] if self._on_done_many else None
        try:
            for key, ok, value in outcomes:
                if ok:
                    self.done(key, value)
                else:
                    self.failed(key, value)
        finally:
            held, self._held = self._held, outer
            done, self._done_batch = self._done_batch, outer_batch
            if done:
                self._tell_done_many(done)
        if held:
            self._dispatch_open(held)  # skips any cancelled meanwhile

    def _tell_done(self) -> None:
        """Hand the keys done so far in this batch to the observers."""
        batch = self._done_batch
        if batch:
            self._done_batch = []
            self._tell_done_many(batch)

    def _tell_done_many(self, batch: list[tuple[str, Any]]) -> None:
        for fn in self._on_done_many:
            try:
                fn(batch)
            except Exception:
                _observer_failed(fn, "on_done_many")

    def failed(self, key: str, exc: BaseException) -> None:
        job = self.state.job_of(key)
        if job is None:
            return
        node = self.state.nodes[key]
        if (
            job.attempts < node.options.retries
            and not self.closed
            and not self.capabilities[job.unit.backend].handles_retries
        ):
            self._retry(job, key, exc)
            return
        # A graph unit's other keys may still be running: only this key's work ends.
        self._finish_work(key if job.unit.graph else job.unit.keys[0])
        self._record_duration(key)
        self._resolve_ended(self.state.fail(key, exc))

    def cancelled(self, key: str, msg: str | None = None) -> None:
        if self.state.is_open(key):
            self._resolve_ended(self.state.cancel(key, msg))

    def _retry(self, job: Job, key: str, exc: BaseException) -> None:
        node = self.state.nodes[key]
        self._finish_work(job.unit.keys[0])
        self._started_at.pop(key, None)  # queued again until the backend restarts it
        again = self.state.retry(job, key)
        delay = node.options.retry_delay * (2**job.attempts)
        log.warning(
            "task %r failed (%s: %s); retry %d of %d",
            node.name,
            type(exc).__name__,
            exc,
            again.attempts,
            node.options.retries,
        )
        if delay > 0:
            self.loop.call_later(delay, self._dispatch_if_open, again)
        else:
            self._dispatch([again])

    def _dispatch_if_open(self, job: Job) -> None:
        self._dispatch_open([job])

    def _dispatch_open(self, jobs: list[Job]) -> None:
        job_of = self.state.job_of
        jobs = [j for j in jobs if job_of(j.unit.keys[0]) is j]
        if jobs:
            self._dispatch(jobs)

    def _record_duration(self, key: str) -> None:
        t0 = self._started_at.pop(key, None)
        if t0 is not None:
            self.state.durations[key] = perf_counter() - t0

    def _hold_remote(self, key: str, value: Remote, fut: asyncio.Future[Any]) -> None:
        """Resolve ``fut`` with a remote value: at once if someone awaits it,
        otherwise when someone does (``fetch_for_handle``)."""
        self.remote.refs[key] = value
        if fut._callbacks:  # awaited or gathered already
            self.fetch_for_handle(key)
            return
        self.remote.pending[key] = fut
        if self.on_remote_pending is not None:
            self.on_remote_pending(fut)

    def fetch_for_handle(self, key: str) -> None:
        """Fetch ``key``'s remote value and resolve its handle future."""
        fut = self.remote.pending.pop(key, None) or self.futures.get(key)
        if fut is None or fut.done():
            return
        fetch = self.remote.fetch(key)

        def resolve(done: asyncio.Future[Any]) -> None:
            if fut.done():
                return
            if done.cancelled():
                asyncio.Future.cancel(fut, "fetching the result was cancelled")
            elif (exc := done.exception()) is not None:
                fut.set_exception(
                    BackendError(f"could not fetch the result of task {key!r}: {exc!r}")
                )
            else:
                fut.set_result(done.result())

        fetch.add_done_callback(resolve)

    def _finish_work(self, head: str) -> None:
        self._running.pop(head, None)
        timer = self._timers.pop(head, None)
        if timer is not None:
            timer.cancel()

    def _timed_out(self, work: Work) -> None:
        self._timers.pop(work.key, None)
        if self._running.get(work.key) is not work:
            return
        timeout = work.nodes[0].options.timeout
        log.warning(
            "task %r timed out after %s s; cancelling it on backend %r (work already in a "
            "thread runs to its end and its result is discarded)",
            work.nodes[0].name,
            timeout,
            work.unit.backend,
        )
        self._spawn(self.backends[work.unit.backend].cancel(work))
        self.failed(
            work.key,
            TaskTimeoutError(f"task {work.nodes[0].name!r} did not finish within {timeout} s"),
        )

    # -- ending -------------------------------------------------------------------------

    def _resolve_ended(self, keys: list[str]) -> None:
        state = self.state
        self._tell_done()  # observers see the ends in the order they happened
        if state.ready_after_end:  # what survived a split graph unit runs now
            ready, state.ready_after_end = state.ready_after_end, []
            self.loop.call_soon(self._dispatch_open, ready)
        for key in keys:
            task = self._tasks.pop(key, None)
            fut = self.futures.get(key)
            if key in state.failures:
                exc = state.failures[key]
                if self.observers:
                    self._notify("on_failed", key, exc)
                self._stop_running(key, None, task, cancelled=False)
                if fut is not None and not fut.done():
                    fut.state = "FAILED"  # type: ignore[attr-defined]
                    fut.set_exception(exc)
                    if isinstance(exc, DependencyFailureError):
                        fut._log_traceback = False  # its root cause is logged, not each dependent
            else:
                msg = state.cancelled.get(key)
                self._record_duration(key)  # a cancelled key may have been running
                if self.observers:
                    self._notify("on_cancelled", key, msg)
                self._stop_running(key, msg, task, cancelled=True)
                if fut is not None and not fut.done():
                    fut.state = "CANCELLED"  # type: ignore[attr-defined]
                    asyncio.Future.cancel(fut, msg)

    def _stop_running(
        self, key: str, msg: str | None, task: asyncio.Task[Any] | None, *, cancelled: bool
    ) -> None:
        if task is not None and not task.done():
            task.cancel(msg)
        for member in self._members.pop(key, ()):
            self.cancel(member, msg)
        work = self._running.get(key)
        if work is None:
            return
        self._finish_work(key)
        backend = self.backends[work.unit.backend]
        if not work.unit.graph:
            self._spawn(backend.cancel(work))
        elif cancelled:  # stop this key only; a failure already stopped its dependents
            self._spawn(backend.cancel(Work(work.unit, (self.state.nodes[key],), EMPTY_MAPPING)))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel(self, key: str, msg: str | None = None) -> bool:
        """Cancel ``key``'s work and every dependent. False when it already ended."""
        if not self.state.is_open(key):
            return False
        self._resolve_ended(self.state.cancel(key, msg))
        return True

    async def close(self, *, cancel: bool = True, timeout: float = 30.0) -> None:
        """Cancel (or wait for) open work, then close every backend concurrently."""
        if not cancel:
            pending = [f for k, f in self.futures.items() if self.state.is_open(k)]
            if pending:
                await asyncio.wait(pending)
        self.closed = True
        for key in self.state.open_keys():
            self.cancel(key, "engine shutdown")
        for key, fut in self.remote.pending.items():
            if not fut.done():
                fut.state = "CANCELLED"  # type: ignore[attr-defined]
                asyncio.Future.cancel(
                    fut, f"engine shutdown: the result of {key!r} stayed on its backend unfetched"
                )
        self.remote.pending.clear()
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)
        closing = [asyncio.ensure_future(b.close()) for b in self.backends.values()]
        if closing:
            done, pending_closes = await asyncio.wait(closing, timeout=timeout)
            for t in pending_closes:
                t.cancel()
                log.error("a backend did not close within %s s", timeout)
            for t in done:
                if t.exception() is not None:
                    log.error("backend close failed: %r", t.exception())
        log.info("engine %s: all backends closed", self.engine_uid)


def _observer_failed(fn: Callable[..., Any], hook: str) -> None:
    log.exception("run observer %r failed in %s", fn, hook)


def _cancel_message(task: asyncio.Task[Any]) -> str | None:
    try:
        task.result()
    except asyncio.CancelledError as exc:
        return exc.args[0] if exc.args else None
    return None


def _each(on_done: Callable[[str, Any], Any], done: list[tuple[str, Any]]) -> None:
    """on_done_many from an observer's on_done: one call per key, each on its own."""
    for key, value in done:
        try:
            on_done(key, value)
        except Exception:
            _observer_failed(on_done, "on_done")


def _one(observer: RunObserver, key: str, value: Any) -> None:
    """on_done from an observer's on_done_many."""
    observer.on_done_many([(key, value)])

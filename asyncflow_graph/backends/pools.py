"""The ``concurrent.futures`` pools of :class:`~.local.LocalExecutionBackend`, and
the work running in them.

* Each submission is tracked until its thread or process really returns: a
  cancelled asyncio future does not stop a thread, so ``close()`` knows what is
  still running, waits :data:`CLOSE_GRACE` seconds for it, then abandons threads
  (a thread cannot be killed; the warning names the tasks) and kills worker
  processes.
* Process pools: calls and results are pickled (cloudpickle) by the pool's own
  feeder and result threads, not on the event loop; a value that cannot be
  pickled fails its own task with a
  :class:`~asyncflow_graph.errors.SerializationError` naming it, and never breaks
  the pool. When a worker dies the pool fails every task it holds: those that
  never reached a worker go to the rebuilt pool as if nothing happened, the others
  fail (``retries=`` runs them again). The pool is rebuilt with the user's
  ``max_workers``, ``mp_context``, ``initializer``/``initargs`` and
  ``max_tasks_per_child``. Workers ignore SIGINT: Ctrl-C is the parent's to act on
  (it shuts the pool down), and a worker must not die of it mid-task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import signal
from collections.abc import Callable, Container, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

from ..errors import BackendError, SerializationError
from ..protocol import Outcome, Work
from ..spec import Call
from . import spill
from .helpers import calls_of, picklable_outcomes, run_chain
from .pickling import unpicklable_argument, unpicklable_task
from .spill import Spilled

__all__ = ["CLOSE_GRACE", "ProcessPool", "ThreadPool", "make_pool"]

log = logging.getLogger("asyncflow_graph")

#: seconds ``close()`` waits for work still running in a thread or worker process
CLOSE_GRACE = 1.0


class ThreadPool:
    """An executor and the submissions that still run in it."""

    kind = "thread"

    def __init__(self, executor: Executor, name: str) -> None:
        self.executor = executor
        self.name = name
        self._running: dict[cf.Future[Any], str] = {}  # -> what it runs, for the log

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self.executor.submit(fn, *args)
        self._running[future] = what
        # Called in the worker thread once it returns (a dict pop holds the GIL).
        future.add_done_callback(self._forget)
        return asyncio.wrap_future(future)

    def _forget(self, future: cf.Future[Any]) -> None:
        self._running.pop(future, None)

    async def run(self, work: Work, stop: Container[str]) -> list[Outcome]:
        """Run ``work`` in the pool; a call whose key is in ``stop`` by the time it
        would start never runs (:func:`~.helpers.run_chain`)."""
        outcomes: list[Outcome] = await self._submit(
            _describe(work), run_chain, calls_of(work), dict(work.inputs), stop
        )
        return outcomes

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop taking work; wait up to ``grace`` seconds for what still runs, then
        let it go (:meth:`_left_running`)."""
        executor = self.executor
        running = [f for f in list(self._running) if not f.cancel()]  # queued ones never start
        if running:
            # A helper thread waits, never the loop; nothing is chained to the loop.
            await asyncio.to_thread(cf.wait, running, grace)
        left = [what for f, what in list(self._running.items()) if not f.done()]
        if left and not self._left_running(sorted(left), grace):
            executor.shutdown(wait=False, cancel_futures=True)
            return
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def _left_running(self, left: list[str], grace: float) -> bool:
        """Threads cannot be killed: say which tasks are abandoned; do not join."""
        log.warning(
            "backend %r: %d cancelled task(s) still running in threads were abandoned after "
            "%.1f s: %s. A thread cannot be killed: the process exits only once they return "
            "(press Ctrl-C again to exit at once); use a process pool for work that must "
            "be stoppable",
            self.name,
            len(left),
            grace,
            ", ".join(left[:10]),
        )
        return False


class PoolSpec(NamedTuple):
    """What a process pool was built with, to build it again the same way."""

    max_workers: int | None
    mp_context: Any
    initializer: Callable[..., Any] | None
    initargs: tuple[Any, ...]
    max_tasks_per_child: int | None

    @classmethod
    def of(cls, pool: ProcessPoolExecutor) -> PoolSpec:
        # The constructor's arguments, kept by CPython under these names since 3.7/3.11.
        initializer = getattr(pool, "_initializer", None)
        initargs = tuple(getattr(pool, "_initargs", ()))
        if initializer is _worker_init:  # already ours: keep the user's own inside
            initializer, initargs = initargs[0], tuple(initargs[1])
        return cls(
            getattr(pool, "_max_workers", None),
            getattr(pool, "_mp_context", None),
            initializer,
            initargs,
            getattr(pool, "_max_tasks_per_child", None),
        )

    def build(self) -> ProcessPoolExecutor:
        extra: dict[str, Any] = {}
        if self.max_tasks_per_child is not None:
            extra["max_tasks_per_child"] = self.max_tasks_per_child
        return ProcessPoolExecutor(
            max_workers=self.max_workers,
            mp_context=self.mp_context,
            initializer=_worker_init,
            initargs=(self.initializer, self.initargs),
            **extra,
        )


def _worker_init(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """Every worker: SIGINT ignored (the parent decides), then the user's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


class ProcessPool(ThreadPool):
    """A process pool: off-loop pickling, named serialization errors, rebuilt
    with its own settings after a worker died."""

    kind = "process"

    def __init__(self, executor: ProcessPoolExecutor, name: str) -> None:
        super().__init__(executor, name)
        self.spec = PoolSpec.of(executor)
        _adopt(executor, self.spec)

    async def run(self, work: Work, stop: Container[str]) -> list[Outcome]:
        calls = calls_of(work)
        while True:
            executor = self.executor
            shipping = _Shipping(calls, dict(work.inputs), stop)
            running = self._submit(_describe(work), _run_shipped, shipping)
            try:
                shipped: _Shipped = await running
                break
            except BrokenProcessPool as exc:
                if self.executor is executor:  # every task of the broken pool lands here
                    self._rebuild()
                if not shipping.sent:
                    continue  # it never reached a worker: the dead one was not running it
                raise BackendError(
                    f"a worker process of backend {self.name!r} died while running "
                    f"{work.nodes[0].name!r} [{work.key}] ({exc}); the pool is rebuilt for "
                    f"later tasks (give the task retries= to run it again)"
                ) from exc
            except Exception as exc:  # raised while pickling the call, in the feeder thread
                raise _unpicklable_call(work, calls, exc) from exc
            finally:
                if shipping.spilled is not None:  # a worker removes what it read
                    shipping.spilled.discard()
        if isinstance(shipped, BaseException):
            raise shipped  # the results could not be read back here
        return shipped

    def _rebuild(self) -> None:
        old = self.executor
        self.executor = self.spec.build()
        old.shutdown(wait=False, cancel_futures=True)

    def _left_running(self, left: list[str], grace: float) -> bool:
        """Worker processes can be killed: kill them, then join the pool."""
        log.warning(
            "backend %r: killing the worker processes of %d cancelled task(s) still "
            "running after %.1f s: %s",
            self.name,
            len(left),
            grace,
            ", ".join(left[:10]),
        )
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.kill()
        return True


def make_pool(executor: Executor, name: str) -> ThreadPool:
    if isinstance(executor, ProcessPoolExecutor):
        return ProcessPool(executor, name)
    return ThreadPool(executor, name)


def _adopt(pool: ProcessPoolExecutor, spec: PoolSpec) -> None:
    """Give the workers of a pool that has not started them yet our initializer
    (around the user's own), as a rebuilt pool gets it."""
    if getattr(pool, "_processes", None) or not hasattr(pool, "_initializer"):
        return  # workers already forked (or not CPython's pool): leave it as it is
    pool._initializer = _worker_init
    pool._initargs = (spec.initializer, spec.initargs)


def _describe(work: Work) -> str:
    node = work.nodes[0]
    more = f" (+{len(work.nodes) - 1} fused)" if len(work.nodes) > 1 else ""
    return f"{node.name!r} [{work.key}]{more}"


# -- shipping calls and results -------------------------------------------------------


class _Shipping:
    """A call for a worker, pickled with cloudpickle when the pool's feeder thread
    pickles it (off the loop); unpickled in the worker without ever raising."""

    __slots__ = ("calls", "inputs", "sent", "spilled", "stop")

    def __init__(self, calls: list[Call], inputs: dict[str, Any], stop: Container[str]) -> None:
        self.calls = calls
        self.inputs = inputs
        self.stop = stop  # picklable (a FlagDirectory): asked in the worker before each call
        self.sent = False  # pickled into the pool's call queue, for a worker to take
        self.spilled: Spilled | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        self.sent = True
        # large arguments through a temporary file, so the loop's thread keeps the GIL
        self.spilled = spill.dump((self.calls, self.inputs, self.stop))
        return (_unship, (self.calls[0].key, self.spilled))


#: what the parent gets back: the outcomes, or the error of reading them
_Shipped = list[Outcome] | BaseException


def _unship(key: str, spilled: Spilled) -> Any:
    try:
        return spill.load(spilled)
    except Exception as exc:  # a worker without the module a value's class lives in
        return SerializationError(
            f"the arguments of task {key!r} cannot be unpickled in the worker process: "
            f"{type(exc).__name__}: {exc} (is every module they need importable there?)"
        )


def _run_shipped(shipped: Any) -> _Returning:
    """Worker side: run the calls; the outcomes go back pickled by cloudpickle."""
    if isinstance(shipped, BaseException):
        return _Returning(shipped)
    calls, inputs, stop = shipped
    try:
        return _Returning(run_chain(calls, inputs, stop))
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: the task's failure
        err = BackendError(f"task {calls[0].key!r} raised {type(exc).__name__}({exc})")
        return _Returning([(calls[0].key, False, err)])


class _Returning:
    """Outcomes on their way back: pickled with cloudpickle in the worker (a value
    that cannot be becomes that task's error), unpickled in the parent's result
    thread, where a failure becomes an error instead of breaking the pool."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_read_back, (_dump_outcomes(self.value),))


def _dump_outcomes(value: Any) -> Spilled:
    try:
        return spill.dump(value)  # a large result: through a file (see spill)
    except Exception:
        if isinstance(value, BaseException):
            return spill.dump(SerializationError(str(value)))
    return spill.dump(picklable_outcomes(value))


def _read_back(spilled: Spilled) -> _Shipped:
    try:
        value: _Shipped = spill.load(spilled)
    except Exception as exc:
        return SerializationError(
            f"a result cannot be unpickled in the parent process: {type(exc).__name__}: {exc}"
        )
    return value


def _unpicklable_call(work: Work, calls: Sequence[Call], exc: BaseException) -> BaseException:
    """Name the task, and the argument that cannot be pickled when one can be found."""
    culprit = next((c for c in map(unpicklable_argument, calls) if c), "")
    where = f"a worker process of backend {work.unit.backend!r}"
    return unpicklable_task(work.nodes[0], work.key, where, exc, culprit)

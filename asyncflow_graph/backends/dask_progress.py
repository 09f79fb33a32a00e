"""Progress of long-running groups, told by the workers while the group runs.

A group (``dask_chunks.run_group``) is one Dask task. When it ends, its worker tells
the client how its tasks ended (a Dask event, ``worker.log_event``: the group's
summary). Until then the client knows nothing of the tasks in it; so when one of
them has been running for
:data:`SLOW` seconds, a thread of the worker process tells the client which task runs now
and how the tasks before it ended, with their values when they are small. So:

* a handle of a task that finished early in a long group resolves then, not at the
  group's end, and the task that runs long shows ``RUNNING``;
* when the worker dies mid-group, the client knows which task was running (that
  one is charged with the death, as Dask charges a single task) and which had
  finished: only the unfinished ones are sent again (a finished task whose value was
  too large to be told is run again: its value died with the worker).

Short groups, the common case, cost one event at their end and no thread wake-up.
"""

from __future__ import annotations

import threading
import time
import traceback
from time import perf_counter
from typing import Any

from ..errors import SerializationError

__all__ = ["FAILED", "OK", "SLOW", "Progress", "begin", "end", "portable"]

OK, FAILED = 1, 2  # the task states of dask_chunks that are told with a payload

#: seconds a task runs before its worker tells the client about its group
SLOW = 0.05
#: a value is told only when its pickle is at most this large ...
SHIP_MAX_BYTES = 8_000
#: ... and one event carries at most this much (the scheduler keeps recent events)
EVENT_MAX_BYTES = 64_000


class Progress:
    """A running group, as the telling thread sees it."""

    __slots__ = ("index", "name", "result", "shipped", "since", "told", "topic", "worker")

    def __init__(self, name: str, topic: str, result: Any, worker: Any) -> None:
        self.name = name  # the group's Dask key
        self.topic = topic
        self.result = result  # the GroupResult being filled
        self.worker = worker
        self.index = 0  # the task running now (set by the runner)
        self.since = perf_counter()  # when it started
        self.told = -1  # the index last told
        self.shipped = 0  # tasks before this one were told


_running: set[Progress] = set()
_lock = threading.Condition()
_threads: list[threading.Thread] = []  # the telling thread, once started


def begin(name: str, topic: str, result: Any) -> Progress | None:
    """Register a group that starts running on this worker (None outside a worker,
    or when the client listens to no topic)."""
    if not topic:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    p = Progress(name, topic, result, worker)
    with _lock:
        _running.add(p)
        if not _threads:
            thread = threading.Thread(target=_tell_loop, name="asyncflow-progress", daemon=True)
            thread.start()
            _threads.append(thread)
        _lock.notify()
    return p


def end(p: Progress, summary: dict[str, Any]) -> None:
    """The group ended: tell the client its summary (before the task returns, so
    the event reaches the client ahead of the result's own message)."""
    with _lock:
        _running.discard(p)
    p.worker.log_event(p.topic, {"group": p.name, "end": summary})


def _tell_loop() -> None:
    while True:
        with _lock:
            while not _running:
                _lock.wait()
            running = list(_running)
        now = perf_counter()
        for p in running:
            if p.index != p.told and now - p.since >= SLOW:
                try:
                    _tell(p)
                except Exception:  # never kill the thread: the group's end tells all
                    p.told = p.index
        time.sleep(SLOW / 2)


def _tell(p: Progress) -> None:
    import cloudpickle

    i = p.index  # every task before it has ended: the runner moves on after storing
    result = p.result
    done: list[list[Any]] = []
    budget = EVENT_MAX_BYTES
    for j in range(p.shipped, i):
        state = result.state[j]
        payload = None
        if state == OK:
            payload = _small(cloudpickle, result.values[j], budget)
        elif state == FAILED:
            payload = _small(cloudpickle, portable(result.errors[j]), budget)
        if payload is not None:
            budget -= len(payload)
        done.append([j, state, payload])
    p.shipped = p.told = i
    p.worker.log_event(p.topic, {"group": p.name, "running": i, "done": done})


def _small(cloudpickle: Any, value: Any, budget: int) -> bytes | None:
    try:
        data = cloudpickle.dumps(value)
    except Exception:
        return None
    return data if len(data) <= min(SHIP_MAX_BYTES, budget) else None


def portable(exc: BaseException) -> BaseException:
    """``exc`` with the worker's traceback as a note, or a clear error if it cannot
    travel to the client."""
    text = "".join(traceback.format_exception(exc))
    if len(text) > 4000:
        text = text[:1000] + "\n...\n" + text[-3000:]
    try:
        import cloudpickle

        cloudpickle.dumps(exc)
    except Exception as err:
        return SerializationError(
            f"the exception the task raised ({type(exc).__name__}: {exc}) cannot be "
            f"pickled back from the Dask worker: {err}\n{text}"
        )
    if not any(n.startswith("Raised on a Dask worker") for n in getattr(exc, "__notes__", ())):
        exc.add_note(f"Raised on a Dask worker:\n{text}")
    return exc

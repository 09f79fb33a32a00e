"""SIGINT/SIGTERM: shut every engine on the loop down gracefully, then let the
signal do what it would have done without us.

* One handler per loop and signal serves every engine on that loop (a second
  ``add_signal_handler`` would silently replace the first engine's). Handlers are
  installed on the main thread only.
* The first signal shuts every engine of the loop down; once they are down the
  handlers that were there before (asyncio.run's Ctrl-C handler, the default, the
  user's own) are put back and the signal is delivered again: SIGTERM then ends the
  process with the conventional status, SIGINT raises ``KeyboardInterrupt``. A
  second signal during the graceful shutdown ends the process at once.
* When the loop's last engine shuts down cleanly the previous handlers come back,
  so the next Ctrl-C acts as usual.
* A forked child (a process-pool worker) must never report its own signals to our
  loop: asyncio's handlers write each signal to a wakeup file descriptor, which a
  fork inherits, so a worker's SIGTERM would shut the parent's engines down. An
  at-fork hook gives each child the default handlers and no wakeup fd, with the
  signals blocked across ``fork()`` so none lands in the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Protocol

__all__ = ["claim_interrupt", "received", "unwatch", "watch"]

log = logging.getLogger("asyncflow_graph")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class Stoppable(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def shutdown(self) -> Awaitable[None]: ...


class _Watch:
    """The signal handling of one loop."""

    __slots__ = ("claimed", "engines", "previous", "received", "stopping")

    def __init__(self, previous: dict[signal.Signals, _Handler]) -> None:
        self.engines: weakref.WeakSet[Stoppable] = weakref.WeakSet()
        self.previous = previous  # the handlers to put back
        self.received: signal.Signals | None = None
        self.claimed = False  # the loop's owner turns SIGINT into KeyboardInterrupt itself
        self.stopping: asyncio.Task[None] | None = None


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()
#: signals that were last seen (by a loop that no longer watches), by loop
_last: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, signal.Signals] = (
    weakref.WeakKeyDictionary()
)


def watch(engine: Stoppable) -> None:
    """SIGINT/SIGTERM shut ``engine`` (and every other engine on its loop) down."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = engine.loop
    state = _watches.get(loop)
    if state is None:
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        try:
            for sig in SIGNALS:
                loop.add_signal_handler(sig, _on_signal, loop, sig)
                # asyncio learns of a signal from its wakeup fd, which a child can write
                # to between its fork and its exec; only a signal to this process runs
                # this Python-level handler, so _on_signal ignores the others.
                signal.signal(sig, _delivered)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # not a Unix loop, or not the main interpreter
        state = _watches[loop] = _Watch(previous)
    state.engines.add(engine)


def unwatch(engine: Stoppable) -> None:
    """Forget ``engine``; when it was the loop's last engine, give SIGINT/SIGTERM
    back, or the next Ctrl-C would be swallowed with nothing to stop."""
    state = _watches.get(engine.loop)
    if state is None:
        return
    state.engines.discard(engine)
    if not state.engines and state.received is None:
        _restore(engine.loop)


def watched(loop: asyncio.AbstractEventLoop) -> list[Stoppable]:
    """The engines whose signals are watched on ``loop`` (for tests and tools)."""
    state = _watches.get(loop)
    return list(state.engines) if state is not None else []


def received(loop: asyncio.AbstractEventLoop) -> signal.Signals | None:
    """The signal that shut ``loop``'s engines down, if one did."""
    state = _watches.get(loop)
    return state.received if state is not None else _last.get(loop)


def claim_interrupt(loop: asyncio.AbstractEventLoop) -> None:
    """The caller (``compute()``) raises ``KeyboardInterrupt`` itself after a SIGINT
    on ``loop`` shut its engines down: do not deliver the SIGINT again."""
    state = _watches.get(loop)
    if state is not None:
        state.claimed = True


def _restore(loop: asyncio.AbstractEventLoop) -> None:
    state = _watches.pop(loop, None)
    if state is None:
        return
    for sig in SIGNALS:
        try:
            loop.remove_signal_handler(sig)
            handler = state.previous.get(sig)
            if handler is not None:
                signal.signal(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # never installed (not a Unix loop, or not the main thread)


#: signals delivered to this process and not yet acted on
_pending: set[int] = set()


def _delivered(signum: int, frame: FrameType | None) -> None:
    _pending.add(signum)


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    state = _watches.get(loop)
    if state is None:
        return
    if sig not in _pending:
        log.debug("ignored a %s that a child process wrote to the loop's wakeup fd", sig.name)
        return
    _pending.discard(sig)
    if state.received is not None:
        log.warning("received %s again: exiting at once", sig.name)
        _die(sig)
        return
    state.received = _last[loop] = sig
    log.warning(
        "received %s: shutting down every engine gracefully (send it again to exit at once)",
        sig.name,
    )
    state.stopping = loop.create_task(_stop(loop, state, sig))


async def _stop(loop: asyncio.AbstractEventLoop, state: _Watch, sig: signal.Signals) -> None:
    try:
        engines = list(state.engines)
        results = await asyncio.gather(*(e.shutdown() for e in engines), return_exceptions=True)
        for engine, result in zip(engines, results, strict=True):
            if isinstance(result, BaseException):
                log.error("shutting %r down after %s failed: %r", engine, sig.name, result)
    finally:
        # Runs even when the loop's owner cancels us: the signal is never lost.
        _restore(loop)
        if sig != signal.SIGINT or not state.claimed:
            log.info("engines shut down after %s: delivering it again", sig.name)
            _flush()
            signal.raise_signal(sig)


def _die(sig: signal.Signals) -> None:
    """End the process as ``sig`` would without any handler."""
    _flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def _flush() -> None:
    # A signal's default action ends the process without flushing Python's buffers.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


# -- forked children ----------------------------------------------------------------------

#: the signal mask of each thread that is forking now, to put back after the fork
_masks: dict[int, set[int | signal.Signals]] = {}


def _before_fork() -> None:
    if _watches:  # the child inherits the mask of the thread that forks
        _masks[threading.get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def _after_fork_parent() -> None:
    mask = _masks.pop(threading.get_ident(), None)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _after_fork_child() -> None:
    if _watches:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):
            pass  # not the main thread of the child: nothing was inherited there
        _watches.clear()
    mask = _masks.pop(threading.get_ident(), None)
    _masks.clear()
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
    )

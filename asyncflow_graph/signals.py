"""SIGINT/SIGTERM: shut every engine on the loop down gracefully.

One handler per loop and signal serves every engine on that loop (a second
``add_signal_handler`` would silently replace the first engine's). Handlers are
installed on the main thread only, and removed when the loop's last engine goes,
so the next Ctrl-C acts as usual.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import weakref
from collections.abc import Awaitable
from typing import Protocol

__all__ = ["unwatch", "watch"]

log = logging.getLogger("asyncflow_graph")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stoppable(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def shutdown(self) -> Awaitable[None]: ...


_engines_by_loop: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakSet[Stoppable]
] = weakref.WeakKeyDictionary()


def watch(engine: Stoppable) -> None:
    """SIGINT/SIGTERM shut ``engine`` (and every other engine on its loop) down."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = engine.loop
    engines = _engines_by_loop.get(loop)
    if engines is None:
        engines = _engines_by_loop[loop] = weakref.WeakSet()
        try:
            for sig in SIGNALS:
                loop.add_signal_handler(sig, _on_signal, loop, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # not a Unix loop, or not the main interpreter
    engines.add(engine)


def unwatch(engine: Stoppable) -> None:
    """Forget ``engine``; when it was the loop's last engine, give SIGINT/SIGTERM
    back, or the next Ctrl-C would be swallowed with nothing to stop."""
    engines = _engines_by_loop.get(engine.loop)
    if engines is None:
        return
    engines.discard(engine)
    if engines:
        return
    del _engines_by_loop[engine.loop]
    try:
        for sig in SIGNALS:
            engine.loop.remove_signal_handler(sig)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # never installed (not a Unix loop, or not the main thread)


def watched(loop: asyncio.AbstractEventLoop) -> list[Stoppable]:
    """The engines whose signals are watched on ``loop`` (for tests and tools)."""
    return list(_engines_by_loop.get(loop, ()))


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    log.warning("received %s: shutting down every engine gracefully", sig.name)
    for s in SIGNALS:
        loop.remove_signal_handler(s)
    for engine in list(_engines_by_loop.pop(loop, ())):
        loop.create_task(engine.shutdown())  # type: ignore[arg-type]

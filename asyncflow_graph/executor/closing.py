"""Shutting a run down: every open key cancelled (or awaited), every backend closed
concurrently, every handle still open ended, and what the engine claimed alone
(its backends, its session directory) released for other engines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ..protocol import Backend
from . import claims
from .handles import Handles
from .remote import RemoteValues
from .state import RunState

__all__ = ["close", "release_claims"]

log = logging.getLogger("asyncflow_graph")


class Executor(Protocol):
    """What shutting down needs of the executor."""

    engine_uid: str
    work_dir: Path
    state: RunState
    handles: Handles
    remote: RemoteValues

    @property
    def backends(self) -> Mapping[str, Backend]: ...

    def cancel(self, key: str, msg: str | None = None) -> bool: ...
    async def settle(self, timeout: float | None = None) -> None: ...
    def cancel_unfinished(self, msg: str) -> None: ...


async def close(executor: Executor, *, cancel: bool, timeout: float, msg: str) -> None:
    """Cancel (or wait for) open work, close every backend concurrently, then end
    every handle still open (lazy tasks never demanded): every future ends."""
    state = executor.state
    if not cancel:
        pending = executor.handles.live(state.open_keys())
        if pending:
            await asyncio.wait(pending)
    state.closing = True
    for key in state.open_keys():
        executor.cancel(key, "engine shutdown")
    executor.remote.cancel_unfetched()
    await executor.settle(timeout)
    await _close_all(executor.backends.values(), timeout)
    log.info("engine %s: all backends closed", executor.engine_uid)
    executor.cancel_unfinished(msg)
    release_claims(executor, closed=True)


def release_claims(executor: Executor, *, closed: bool) -> None:
    """Shut down: the backends (``closed`` by this engine, or left running) and the
    session directory may serve another engine."""
    for backend in executor.backends.values():
        claims.release_backend(backend, executor.engine_uid, closed=closed)
    claims.release_directory(executor.work_dir, executor)


async def _close_all(backends: Iterable[Backend], timeout: float) -> None:
    closing = [asyncio.ensure_future(b.close()) for b in backends]
    if not closing:
        return
    done, pending = await asyncio.wait(closing, timeout=timeout)
    for t in pending:
        t.cancel()
        log.error("a backend did not close within %s s", timeout)
    for t in done:
        if t.exception() is not None:
            log.error("backend close failed: %r", t.exception())

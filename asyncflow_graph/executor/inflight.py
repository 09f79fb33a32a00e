"""The work backends hold now: by key, with the timers of their timeouts.

Part of the executor's run state (the driver owns one): a unit's work is here from
its submission until its backend reports it ended, it times out, or it is stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping

from ..coro import first_step
from ..protocol import Backend, Work
from ..spec import EMPTY_MAPPING, Node

__all__ = ["InFlight"]

log = logging.getLogger("asyncflow_graph")


class InFlight:
    __slots__ = ("_backends", "_loop", "_spawn", "_timers", "works")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        backends: Mapping[str, Backend],
        spawn: Callable[[Awaitable[object]], None],
    ) -> None:
        self._loop = loop
        self._backends = backends
        self._spawn = spawn
        #: head key (and every key of a unit of several) -> the work a backend holds
        self.works: dict[str, Work] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def arm(self, head: str, timeout: float, on_timeout: Callable[[], None]) -> None:
        """Call ``on_timeout`` if ``head``'s work is still here after ``timeout`` s.
        A timer armed already (at a builder's start) keeps running: the timeout
        counts from the first step of the task. (The driver puts works in
        :attr:`works` itself: that is its hot path.)"""
        if head not in self._timers:
            self._timers[head] = self._loop.call_later(timeout, on_timeout)

    def arm_node(self, node: Node, on_timeout: Callable[[], None]) -> None:
        """Arm ``node``'s timeout, if it has one (the fusion rule keeps a task with a
        timeout alone in its unit, so it governs that task alone)."""
        if node.options.timeout is not None:
            self.arm(node.key, node.options.timeout, on_timeout)

    def finish(self, head: str) -> None:
        """Forget ``head``'s work (its backend reported the end): nothing to cancel."""
        self.works.pop(head, None)
        timer = self._timers.pop(head, None)
        if timer is not None:
            timer.cancel()

    def timer_fired(self, head: str) -> None:
        self._timers.pop(head, None)

    def stop_timed_out(self, key: str) -> None:
        """Cancel ``key``'s work on its backend: it ran past its timeout."""
        work = self.works.get(key)
        if work is None:
            return
        log.warning(
            "task %r timed out after %s s; cancelling it on backend %r (work already in a "
            "thread runs to its end and its result is discarded)",
            work.nodes[0].name,
            work.nodes[0].options.timeout,
            work.unit.backend,
        )
        self.finish(key)  # the failure that follows must not cancel it again
        self._cancel(self._backends[work.unit.backend], work)

    def stop(self, key: str, node: Node, *, cancelled: bool) -> None:
        """``key`` ended without its backend saying so: stop what still runs it."""
        work = self.works.get(key)
        if work is None:
            return
        self.finish(key)
        backend = self._backends[work.unit.backend]
        if not work.unit.graph:
            self._cancel(backend, work)
        elif cancelled:  # stop this key only; a failure already stopped its dependents
            self._cancel(backend, Work(work.unit, (node,), EMPTY_MAPPING))

    def stop_tail(self, head: str, key: str) -> None:
        """The running chain ``head`` lost ``key`` and what follows: its backend must
        start none of them (the keys before ``key`` run on)."""
        work = self.works.get(head)
        if work is not None and key in work.unit.keys:
            backend = self._backends[work.unit.backend]
            self._now(backend, backend.cancel_tail(work, key))

    def _cancel(self, backend: Backend, work: Work) -> None:
        self._now(backend, backend.cancel(work))

    def _now(self, backend: Backend, aw: Awaitable[object]) -> None:
        """Run a backend's cancel, its first step now: when the cancel that ended a
        key returns, a backend that can act at once has (nothing it stopped starts
        after it), and the rest runs in the background."""
        if not inspect.iscoroutine(aw):
            self._spawn(aw)
            return
        try:
            _, rest = first_step(aw)
        except Exception:
            log.exception("backend %r failed to cancel", backend.name)
            return
        if rest is not None:
            self._spawn(rest[0])

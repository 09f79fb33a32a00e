"""Engine listeners: told when a ``workflow_scope()`` is entered and left, and once
when the engine has shut down (telemetry ends its workflow and session spans
then). Called on the loop thread; a listener that raises is logged and ignored."""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["EngineListener", "Listeners"]

log = logging.getLogger("asyncflow_graph")


class EngineListener(Protocol):
    def workflow_entered(self, workflow_id: str) -> None: ...
    def workflow_exited(self, workflow_id: str) -> None: ...
    async def engine_shut_down(self) -> None: ...


class Listeners:
    __slots__ = ("_all",)

    def __init__(self) -> None:
        self._all: list[EngineListener] = []

    def add(self, listener: EngineListener) -> None:
        self._all.append(listener)

    def remove(self, listener: EngineListener) -> None:
        if listener in self._all:
            self._all.remove(listener)

    def entered(self, wid: str) -> None:
        for listener in tuple(self._all):
            try:
                listener.workflow_entered(wid)
            except Exception:
                log.exception("engine listener %r failed on workflow_entered(%r)", listener, wid)

    def exited(self, wid: str) -> None:
        for listener in tuple(self._all):
            try:
                listener.workflow_exited(wid)
            except Exception:
                log.exception("engine listener %r failed on workflow_exited(%r)", listener, wid)

    async def shut_down(self) -> None:
        for listener in tuple(self._all):
            try:
                await listener.engine_shut_down()
            except Exception:
                log.exception("engine listener %r failed at shutdown", listener)

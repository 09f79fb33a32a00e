"""``NoopExecutionBackend``: a dry run. Never runs a task's function or command.

Executable and prompt builders do run (with their inputs' values), as in AsyncFlow,
so a builder that returns no command or no prompt fails in a dry run as it would for
real. Every task is done at once with ``"Dummy Output"``, every prompt with
``"Dummy Prompt Output"``. Besides the native protocol it speaks AsyncFlow's backends
API (``register_callback`` + ``submit_tasks`` ...) for code that drives it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..protocol import Backend, BackendContext, Capabilities, Work
from ..spec import TaskKind
from .asyncflow_api import AsyncFlowBackendAPI, mark_attached

__all__ = ["DUMMY_OUTPUT", "DUMMY_PROMPT_OUTPUT", "NoopExecutionBackend"]

DUMMY_OUTPUT = "Dummy Output"
DUMMY_PROMPT_OUTPUT = "Dummy Prompt Output"


class NoopExecutionBackend(AsyncFlowBackendAPI, Backend):
    capabilities = Capabilities(supports_prompts=True)

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)
        self._init_asyncflow_api()

    async def start(self, context: BackendContext) -> None:
        await super().start(context)
        mark_attached(self, context)

    def state(self) -> str:
        return "IDLE"

    # -- native protocol ------------------------------------------------------------------

    def submit(self, works: Sequence[Work]) -> None:
        # Complete on the next loop turn: reporting from inside submit would
        # re-enter the executor and recurse along long cross-backend chains.
        self.context.loop.call_soon(self._complete, list(works))

    def _complete(self, works: list[Work]) -> None:
        self.context.reporter.ended(
            (node.key, True, DUMMY_PROMPT_OUTPUT if node.kind is TaskKind.PROMPT else DUMMY_OUTPUT)
            for w in works
            for node in w.nodes
        )

    # -- AsyncFlow's backends API -----------------------------------------------------------

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> None:
        """Mark every task DONE at once through the registered callback, with
        ``stdout`` and ``return_value`` set to the dummy output."""
        for task in tasks:
            out = DUMMY_PROMPT_OUTPUT if task.get("prompt") else DUMMY_OUTPUT
            task["stdout"] = task["return_value"] = out
            task["exit_code"] = 0
            self._task_callback(task, "DONE")

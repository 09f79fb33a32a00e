"""``NoopExecutionBackend``: a dry run. Never runs user code, not even builders."""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol import Backend, Capabilities, Work
from ..spec import TaskKind

__all__ = ["NoopExecutionBackend"]

DUMMY_OUTPUT = "Dummy Output"
DUMMY_PROMPT_OUTPUT = "Dummy Prompt Output"


class NoopExecutionBackend(Backend):
    capabilities = Capabilities(supports_prompts=True, executes_code=False)

    def __init__(self, name: str = "default") -> None:
        super().__init__(name)

    def state(self) -> str:
        return "IDLE"

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

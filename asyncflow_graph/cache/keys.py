"""Cache keys: one content token per task call, from what determines its result.

* function task: the function's code token (:mod:`.code`), its argument values with
  each upstream result standing in by that result's content token, ``cache_version``;
* executable task: the built command text, ``cwd``, the ``env`` overrides of its
  ``task_description`` (not the whole environment), the content of its existing
  ``InputFile`` arguments, its upstream results' tokens, ``cache_version``;
* prompt task: the prompt text, the backend's model, endpoint and generation
  options merged with the task's own, ``cache_version``.

Every key starts with the key format, the Python version and the hash algorithm, so
a change of any of them changes every key instead of misreading old entries.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..data import InputFile
from ..protocol import Command
from ..spec import Node
from .code import CodeTokens
from .hashing import HASH_NAME, new_hasher

__all__ = ["KEY_FORMAT", "KeyMaker"]

KEY_FORMAT = 1
_HEADER = (
    f"asyncflow-graph-cache/{KEY_FORMAT} py{sys.version_info[0]}.{sys.version_info[1]} "
    f"{HASH_NAME}\n"
).encode()


class KeyMaker:
    """Keys for one run (its code and value tokens are memoized for the run)."""

    __slots__ = ("_signatures", "code", "values")

    def __init__(self) -> None:
        self.code = CodeTokens()
        self.values = self.code.values
        self._signatures: dict[Callable[..., Any], inspect.Signature] = {}

    def function(self, node: Node, refs: Mapping[str, bytes]) -> str:
        """Raises :class:`~.values.Untokenizable` when an argument has no token."""
        h = new_hasher()
        h.update(_HEADER + b"function\n")
        h.update(self.code.token(node.func).encode())
        ignore = node.options.cache_ignore
        if ignore:
            bound = self._signature(node.func).bind_partial(*node.args, **node.kwargs)
            kept = {k: v for k, v in bound.arguments.items() if k not in ignore}
            h.update(self.values.token(kept, refs))
        else:
            h.update(self.values.token((node.args, dict(node.kwargs)), refs))
        _version(h, node.options.cache_version)
        return h.hexdigest()

    def executable(self, node: Node, command: Command, refs: Mapping[str, bytes]) -> str:
        h = new_hasher()
        h.update(_HEADER + b"executable\n")
        desc = node.options.task_description
        env = desc.get("env") or {}
        files = [a for a in (*node.args, *node.kwargs.values()) if type(a) is InputFile]
        upstream = [refs[d] for d in node.deps if d in refs]
        parts = (command.text, command.argv is None, command.cwd, dict(env), files, upstream)
        h.update(self.values.token(parts))
        _version(h, node.options.cache_version)
        return h.hexdigest()

    def prompt(self, node: Node, prompt: str, identity: Any) -> str:
        """``identity``: the serving backend's model, endpoint and generation options
        for this task (``OpenAIInferenceBackend.cache_identity``)."""
        h = new_hasher()
        h.update(_HEADER + b"prompt\n")
        h.update(self.values.token((prompt, identity)))
        _version(h, node.options.cache_version)
        return h.hexdigest()

    def _signature(self, func: Callable[..., Any]) -> inspect.Signature:
        sig = self._signatures.get(func)
        if sig is None:
            sig = self._signatures[func] = inspect.signature(func)
        return sig


def _version(h: Any, version: Any) -> None:
    if version is not None:
        h.update(b"\nversion=" + repr(version).encode())

"""What makes a callable the callable it is, for the tokens of pure calls.

A name is not enough: two module-level lambdas are both ``<lambda>``, the bound
methods of two objects share their class's qualified name, a function redefined
in the same module keeps its name, and closures over different values share
their code. :func:`callable_identity` returns a label (kind, qualified name and a
digest of the code) and the values that complete it (defaults, closure cells, the
bound object, a partial's arguments); :func:`asyncflow_graph.spec.tokenize`
normalizes those values as it does arguments. Everything here is deterministic
across processes (no ``id``, no hash-seed dependent order), so equal callables in
two runs get equal tokens.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Callable
from typing import Any

__all__ = ["callable_identity", "code_digest"]


def callable_identity(obj: Any) -> tuple[str, tuple[Any, ...]] | None:
    """``(label, values)`` for the callables whose identity is known; None for
    others (callable instances, local classes), which the caller falls back on."""
    t = type(obj)
    if t is types.FunctionType:
        cells: tuple[Any, ...] = ()
        if obj.__closure__:
            cells = tuple(_cell_value(c) for c in obj.__closure__)
        label = f"fn:{obj.__module__}.{obj.__qualname__}:{code_digest(obj.__code__)}"
        return label, (obj.__defaults__, obj.__kwdefaults__, cells)
    if t is types.MethodType:
        return "method", (obj.__func__, obj.__self__)
    if t is functools.partial:
        return "partial", (obj.func, obj.args, obj.keywords)
    if t is types.BuiltinFunctionType:
        owner = obj.__self__
        label = f"builtin:{getattr(obj, '__module__', None)}.{obj.__qualname__}"
        # len's owner is the builtins module; [].append's is that very list
        return label, (() if owner is None or isinstance(owner, types.ModuleType) else (owner,))
    if isinstance(obj, type) and "<locals>" not in obj.__qualname__:
        return f"type:{obj.__module__}.{obj.__qualname__}", ()
    return None


class _Empty:
    """An unfilled closure cell (a name assigned after the inner function)."""

    def __repr__(self) -> str:
        return "<empty cell>"


_EMPTY = _Empty()


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY


@functools.lru_cache(maxsize=4096)
def code_digest(code: types.CodeType) -> str:
    """A digest of what ``code`` does: its bytecode, constants (nested code
    objects included) and the names it uses."""
    h = hashlib.blake2b(digest_size=10)
    _feed(h.update, code)
    return h.hexdigest()


def _feed(update: Callable[[bytes], object], code: types.CodeType) -> None:
    update(code.co_code)
    update(repr(code.co_names).encode())
    update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed(update, const)
        elif isinstance(const, frozenset):  # its repr's order depends on the hash seed
            update(repr(sorted(map(repr, const))).encode())
        else:
            update(repr(const).encode())
        update(b"\x00")

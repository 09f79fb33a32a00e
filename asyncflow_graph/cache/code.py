"""Code tokens: what a function *does*, as far as a cache key needs to know.

A function defined in the user's own modules is tokenized by its bytecode with
every constant resolved (nested functions and lambdas recursively), its argument
names, defaults, closure values and the globals it reads; a global that is itself a
user function, class or module enters by *its* code token, recursively, so editing a
helper in another module invalidates every task that calls it. Line numbers, file
names, docstrings and the names of local variables are left out: a changed comment
or a renamed local keeps the key.

Functions of the standard library and of installed packages are not hashed: they
enter by module, name and package version (``numpy==2.4.6``), as does
``asyncflow_graph`` itself.
"""

from __future__ import annotations

import contextlib
import dis
import enum
import functools
import importlib.metadata
import inspect
import os
import site
import sys
import sysconfig
import types
from collections.abc import Iterator
from typing import Any

from .hashing import Hasher, new_hasher
from .values import Untokenizable, ValueTokens

__all__ = ["CodeTokens", "library_of"]

_CONSTS = frozenset(dis.hasconst)
_NAMES = frozenset(dis.hasname)
_SKIPPED = frozenset(dis.opmap[name] for name in ("NOP", "RESUME", "CACHE") if name in dis.opmap)
_FLAGS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR
_FLAGS |= inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_SKIPPED_CLASS_ATTRS = frozenset(
    {"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"}
)
#: packages whose code is the library's, not the user's, wherever they are installed
_OWN = "asyncflow_graph"


class CodeTokens:
    """Code tokens for one run, memoized per function object (a module edited
    between two runs gives new tokens in the next run)."""

    __slots__ = ("_active", "_code", "_memo", "values")

    def __init__(self) -> None:
        self.values = ValueTokens(self.token)
        self._memo: dict[int, tuple[Any, str]] = {}
        self._code: dict[int, tuple[types.CodeType, bytes]] = {}
        self._active: set[int] = set()

    def token(self, obj: Any) -> str:
        """The token of a callable (function, method, class, partial, callable object)."""
        known = self._memo.get(id(obj))
        if known is not None and known[0] is obj:
            return known[1]
        if id(obj) in self._active:  # recursion (a function calling itself): by name
            return f"cycle:{_qualified(obj)}"
        self._active.add(id(obj))
        try:
            token = self._token(obj)
        finally:
            self._active.discard(id(obj))
        self._memo[id(obj)] = (obj, token)
        return token

    def _token(self, obj: Any) -> str:
        inner = getattr(obj, "func", None)
        if type(obj).__name__ == "TaskDefinition" and inner is not None:
            return self.token(inner)
        if isinstance(obj, functools.partial):
            parts = (self.token(obj.func), obj.args, obj.keywords)
            return "partial:" + self.values.token(parts).hex()
        if isinstance(obj, types.MethodType):
            bound = self.values.token(obj.__self__).hex() if not _is_module(obj.__self__) else ""
            return f"method:{self.token(obj.__func__)}:{bound}"
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, type):
            return self._class(obj)
        if isinstance(obj, types.BuiltinFunctionType | types.BuiltinMethodType):
            module = getattr(obj, "__module__", None) or "builtins"
            return f"lib:{library_of(module)}:{_qualified(obj)}"
        # a callable object: its class's code and its own state
        return f"object:{self.token(type(obj))}:{self.values.token(obj).hex()}"

    # -- functions --------------------------------------------------------------------

    def _function(self, func: types.FunctionType) -> str:
        lib = library_of(func.__module__)
        if lib is not None:
            return f"lib:{lib}:{_qualified(func)}"
        h = new_hasher()
        code = func.__code__
        h.update(self._code_digest(code))
        h.update(self._value(func.__defaults__))
        h.update(self._value(func.__kwdefaults__))
        for cell in func.__closure__ or ():
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                h.update(b"<empty>")
                continue
            h.update(self._global(content, set(), by_value=True))
        names = set(_names(code))
        scope = func.__globals__
        for name in sorted(names):
            if name in scope:
                h.update(name.encode() + b"=" + self._global(scope[name], names))
        for module in sorted(_imported(code)):
            imported = sys.modules.get(module)
            if imported is not None:
                h.update(module.encode() + b"=" + self._global(imported, names))
        return "fn:" + h.hexdigest()

    def _code_digest(self, code: types.CodeType) -> bytes:
        """Bytecode with constants resolved; no line numbers, no local names."""
        known = self._code.get(id(code))
        if known is not None and known[0] is code:
            return known[1]
        h = new_hasher()
        nargs = code.co_argcount + code.co_kwonlyargcount
        nargs += bool(code.co_flags & inspect.CO_VARARGS) + bool(
            code.co_flags & inspect.CO_VARKEYWORDS
        )
        h.update(
            repr(
                (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
                 code.co_flags & _FLAGS, code.co_varnames[:nargs])
            ).encode()
        )  # fmt: skip
        for ins in dis.get_instructions(code):
            if ins.opcode in _SKIPPED:
                continue
            h.update(b"%d,%d;" % (ins.opcode, -1 if ins.arg is None else ins.arg))
            if ins.opcode in _CONSTS:
                self._feed_const(h, ins.argval)
            elif ins.opcode in _NAMES:
                h.update(str(ins.argval).encode())
        h.update(getattr(code, "co_exceptiontable", b""))
        digest = h.digest()
        self._code[id(code)] = (code, digest)
        return digest

    def _feed_const(self, h: Hasher, const: Any) -> None:
        if isinstance(const, types.CodeType):
            h.update(b"C" + self._code_digest(const))
        elif isinstance(const, tuple | frozenset) and any(
            isinstance(c, types.CodeType) for c in const
        ):
            for c in const:
                self._feed_const(h, c)
        else:
            h.update(b"K" + self.values.token(const))

    # -- classes, modules and other globals -------------------------------------------

    def _class(self, cls: type) -> str:
        lib = library_of(cls.__module__)
        if lib is not None:
            return f"lib:{lib}:{_qualified(cls)}"
        h = new_hasher()
        h.update(cls.__qualname__.encode())
        for base in cls.__bases__:
            h.update(self.token(base).encode())
        for name, attr in sorted(vars(cls).items()):
            if name in _SKIPPED_CLASS_ATTRS:
                continue
            h.update(name.encode() + b"=" + self._member(attr))
        return "class:" + h.hexdigest()

    def _member(self, attr: Any) -> bytes:
        if isinstance(attr, staticmethod | classmethod):
            attr = attr.__func__
        if isinstance(attr, property):
            parts = (attr.fget, attr.fset, attr.fdel)
            return b"|".join(self.token(f).encode() if f else b"-" for f in parts)
        return self._global(attr, set())

    def _global(self, value: Any, names: set[str], *, by_value: bool = False) -> bytes:
        """The token of a global (or, ``by_value``, a closure value) a function reads.

        A global constant enters by value; a mutable global (a list, a dict, an
        object: often a registry or a log the code appends to) by its type only, or
        every run that touched it would miss."""
        if _is_module(value):
            return self._module(value, names)
        if callable(value) and _is_code(value):
            return self.token(value).encode()
        if by_value or _is_constant(value):
            return self._value(value)
        return f"type:{_qualified(type(value))}".encode()

    def _module(self, module: types.ModuleType, names: set[str]) -> bytes:
        lib = library_of(module.__name__)
        if lib is not None:
            return f"lib:{lib}:{module.__name__}".encode()
        if id(module) in self._active:
            return f"cycle:{module.__name__}".encode()
        self._active.add(id(module))
        try:  # module.attr: every attribute whose name the code uses
            h = new_hasher()
            for name in sorted(names):
                attr = getattr(module, name, None)
                if attr is not None and not name.startswith("__"):
                    h.update(name.encode() + b"=" + self._global(attr, names))
            return b"module:" + h.hexdigest().encode()
        finally:
            self._active.discard(id(module))

    def _value(self, value: Any) -> bytes:
        try:
            return self.values.token(value)
        except Untokenizable:
            # An open file, a lock, a client: what a result depends on is rarely the
            # identity of such an object, so it enters by its type alone.
            return f"type:{_qualified(type(value))}".encode()


_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None), range, enum.Enum)


def _is_constant(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _CONSTANT_TYPES):
        return True
    if isinstance(value, tuple | frozenset) and depth < 8:
        return all(_is_constant(v, depth + 1) for v in value)
    return False


def _is_module(obj: Any) -> bool:
    return isinstance(obj, types.ModuleType)


def _is_code(obj: Any) -> bool:
    return isinstance(
        obj, types.FunctionType | types.MethodType | type | functools.partial
    ) or type(obj).__name__ in ("TaskDefinition", "builtin_function_or_method")


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', type(obj).__name__))}"


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _imported(code: types.CodeType) -> Iterator[str]:
    """Absolute module names a function imports in its body."""
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME":
            yield str(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _imported(const)


# -- where a module comes from ----------------------------------------------------------


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # virtualenv's old site module has none
        paths.update(site.getsitepackages())
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        paths.add(user)
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


@functools.cache
def library_of(module_name: str) -> str | None:
    """``"name==version"`` when ``module_name`` belongs to the standard library or
    an installed package, else None (the user's own code)."""
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return f"python=={sys.version_info[0]}.{sys.version_info[1]}"
    if top == _OWN:
        return f"{_OWN}=={_version(top)}"
    module = sys.modules.get(module_name) or sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if module is None or top == "__main__" or path is None:
        return None  # __main__, a notebook cell, a namespace package of the user's
    real = os.path.realpath(path)
    if not any(real.startswith(d) for d in _library_dirs()):
        return None
    return f"{top}=={_version(top)}"


def _version(top: str) -> str:
    try:  # most packages are distributed under their import name: no scan needed
        return importlib.metadata.version(top)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        pass
    for dist in _distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"

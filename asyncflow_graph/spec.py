"""Graph spec: the frozen values a task graph is made of.

A :class:`Node` is one task call: its callable, its arguments (with every upstream
handle replaced by a :class:`Ref`), its dependencies (fixed at construction) and its
options. Nodes never change once built; the executor keeps all run state elsewhere.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import ConfigurationError, shown
from .tokens import callable_identity

__all__ = [
    "EMPTY_MAPPING",
    "GENERATION_OPTIONS",
    "Call",
    "ForeignReference",
    "Node",
    "Ref",
    "TaskKind",
    "TaskOptions",
    "bind",
    "call",
    "extract_refs",
    "register_reference_type",
    "substitute",
    "tokenize",
]


class TaskKind(StrEnum):
    FUNCTION = "function"
    EXECUTABLE = "executable"
    PROMPT = "prompt"
    BLOCK = "block"


EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options. One instance is shared by every call of a decorated
    function unless a call passes ``task_description=``."""

    backend: str | None = None
    capture_stdio: bool = False
    service: bool = False
    pure: bool = False
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    task_description: Mapping[str, Any] = field(default_factory=lambda: EMPTY_MAPPING)
    #: what the task needs from the backend, e.g. ``{"GPU": 1}``; after construction
    #: this holds the decorator's mapping with ``task_description["resources"]`` over it
    resources: Mapping[str, float] = field(default_factory=lambda: EMPTY_MAPPING)
    # Generation options of prompt tasks (None: the inference backend's default).
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None
    system: str | None = None
    #: result cache: True/False per task, None for the engine's default
    cache: bool | None = None
    #: bump by hand to invalidate this task's cached results
    cache_version: str | int | None = None
    #: argument names left out of the cache key (``("verbose",)``)
    cache_ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend is not None and not isinstance(self.backend, str):
            raise ConfigurationError(f"backend= must be a backend name (str), got {self.backend!r}")
        for flag in ("capture_stdio", "service", "pure"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag}= must be True or False, got {shown(getattr(self, flag))}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries= must be an int >= 0, got {shown(self.retries)}")
        if not isinstance(self.retry_delay, int | float) or self.retry_delay < 0:
            raise ConfigurationError(
                f"retry_delay= must be >= 0 seconds, got {shown(self.retry_delay)}"
            )
        if self.timeout is not None and (
            not isinstance(self.timeout, int | float) or self.timeout <= 0
        ):
            raise ConfigurationError(
                f"timeout= must be a positive number, got {shown(self.timeout)}"
            )
        if not isinstance(self.task_description, Mapping):
            raise TypeError(
                f"task_description must be a dict, got {type(self.task_description).__name__}"
            )
        object.__setattr__(self, "resources", _merged_resources(self))
        _check_generation(self)
        _check_cache(self)

    def with_description(self, extra: Mapping[str, Any]) -> TaskOptions:
        """Options with ``extra`` merged over the definition-time description."""
        merged = MappingProxyType({**self.task_description, **extra})
        options = replace(self, task_description=merged)
        # retries/timeout and the generation options may also be given through the
        # description (AsyncFlow style); "resources" is merged by __post_init__.
        lifted = {name: extra[name] for name in _LIFTED if name in extra}
        if lifted:
            options = replace(options, **lifted)
        return options


#: task_description keys that set the option of the same name
_LIFTED = ("retries", "timeout", "retry_delay", "max_tokens", "temperature", "stop", "system")
#: the options that only prompt tasks take
GENERATION_OPTIONS = ("max_tokens", "temperature", "stop", "system")


def _merged_resources(options: TaskOptions) -> Mapping[str, float]:
    """The decorator's ``resources=`` with ``task_description["resources"]`` over it
    (a call's description is the more specific of the two)."""
    own = _check_resources(options.resources, "resources=")
    described = options.task_description.get("resources")
    if described is None:
        return own
    extra = _check_resources(described, "task_description['resources']")
    return MappingProxyType({**own, **extra}) if own else extra


def _check_resources(value: Any, where: str) -> Mapping[str, float]:
    if value is EMPTY_MAPPING:
        return value
    ok = isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    )
    if not ok:
        raise ConfigurationError(
            f"{where} must map resource names to amounts >= 0, for example "
            f"{{'GPU': 1, 'CPU': 4}}; got {shown(value)}"
        )
    return MappingProxyType(dict(value)) if value else EMPTY_MAPPING


def _check_generation(options: TaskOptions) -> None:
    n = options.max_tokens
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
        raise ConfigurationError(f"max_tokens= must be an int > 0, got {shown(n)}")
    t = options.temperature
    if t is not None and (not isinstance(t, int | float) or isinstance(t, bool) or t < 0):
        raise ConfigurationError(
            f"temperature= must be a number >= 0 (0 is greedy), got {shown(t)}"
        )
    s = options.system
    if s is not None and (not isinstance(s, str) or not s.strip()):
        raise ConfigurationError(f"system= must be a non-empty system prompt (str), got {shown(s)}")
    object.__setattr__(options, "stop", _normalized_stop(options.stop))


def _check_cache(options: TaskOptions) -> None:
    if options.cache is not None and not isinstance(options.cache, bool):
        raise TypeError(f"cache= must be True, False or None, got {shown(options.cache)}")
    v = options.cache_version
    if v is not None and (not isinstance(v, str | int) or isinstance(v, bool)):
        raise ConfigurationError(f"cache_version= must be a str or an int, got {shown(v)}")
    ignore = options.cache_ignore
    names = (ignore,) if isinstance(ignore, str) else ignore
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(
            f"cache_ignore= must name arguments, e.g. cache_ignore=('verbose',), got "
            f"{shown(ignore)}"
        )
    object.__setattr__(options, "cache_ignore", tuple(names))


def _normalized_stop(stop: Any) -> tuple[str, ...] | None:
    """``stop`` as a tuple of strings: one str or a list/tuple of them (empty: None)."""
    if stop is None:
        return None
    items = (stop,) if isinstance(stop, str) else stop
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) and x for x in items):
        raise ConfigurationError(
            f"stop= must be a non-empty string or a list of them, e.g. stop=['\\n\\n'], "
            f"got {shown(stop)}"
        )
    return tuple(items) or None


class Ref:
    """A reference to another node's value inside a node's arguments."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and other.key == self.key

    def __hash__(self) -> int:
        return hash((Ref, self.key))

    def __reduce__(self) -> tuple[type[Ref], tuple[str]]:
        return (Ref, (self.key,))


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One task call. ``deps`` are the keys of the nodes whose values it needs."""

    key: str
    name: str
    kind: TaskKind
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    deps: tuple[str, ...]
    options: TaskOptions
    workflow_id: str | None = None
    parent: str | None = None  # key of the block whose body created this node
    deep: bool = False  # some Ref sits inside a container (slower substitution path)

    @property
    def backend(self) -> str | None:
        return self.options.backend

    def __repr__(self) -> str:
        return f"Node({self.key!r}, {self.kind.value}, deps={list(self.deps)})"

    def to_call(self) -> Call:
        """What running this node needs, as a picklable value (the options hold
        mapping proxies, which do not pickle, and a worker needs none of them)."""
        return Call(self.key, self.func, self.args, dict(self.kwargs), self.deps, self.deep)


class Call(NamedTuple):
    """A node reduced to what running it needs; ships to threads, worker
    processes and Dask workers. Has the same fields as :class:`Node` for
    :func:`bind` and :func:`call`."""

    key: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    deps: tuple[str, ...]
    deep: bool


def bind(node: Node | Call, values: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``node``'s arguments with every :class:`Ref` replaced by its value in
    ``values`` (which must hold every key of ``node.deps``)."""
    if not node.deps:
        return node.args, dict(node.kwargs)
    return substitute(node.args, node.kwargs, values, node.deep)


def call(node: Node | Call, values: Mapping[str, Any]) -> Any:
    """Resolve ``node``'s inputs from ``values`` and call its function: the one
    place that does it, for every backend and the executor. A coroutine
    function's coroutine is returned unawaited (the caller knows its loop)."""
    if not node.deps:
        return node.func(*node.args, **node.kwargs)
    args, kwargs = substitute(node.args, node.kwargs, values, node.deep)
    return node.func(*args, **kwargs)


# --------------------------------------------------------------------------- references

_ATOMIC: frozenset[type] = frozenset({int, float, str, bytes, bool, type(None), complex})
_CONTAINERS: frozenset[type] = frozenset({list, tuple, dict, set, frozenset})
_reference_types: set[type] = set()


def register_reference_type(cls: type) -> None:
    """Declare ``cls`` (which has a ``key`` attribute) as a handle to a node.

    Instances carry ``host``: the builder they belong to (an engine's intake;
    None for the script face's unbound nodes). The handle module registers its
    classes so the spec never imports it."""
    _reference_types.add(cls)


class ForeignReference(ConfigurationError):
    """Raised by :func:`extract_refs` for a handle that belongs to another host (the
    decorators replace it with an error that names both)."""

    def __init__(self, handle: Any) -> None:
        super().__init__(f"{handle!r} belongs to another engine or builder")
        self.handle = handle


def extract_refs(
    args: tuple[Any, ...], kwargs: dict[str, Any], host: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any], tuple[str, ...], bool]:
    """Replace handles in ``args``/``kwargs`` (at any depth) by :class:`Ref`.

    Returns the new args and kwargs, the ordered unique dependency keys, and
    whether any reference sits inside a container. A handle whose ``host`` is
    not ``host`` raises :class:`ForeignReference`: its key names a node of
    another graph, and the same key here would be another task."""
    deps: dict[str, None] = {}
    deep = False
    new_args = args
    for i, a in enumerate(args):
        t = type(a)
        if t in _ATOMIC:
            continue
        if t in _reference_types:
            if a.host is not host:
                raise ForeignReference(a)
            if new_args is args:
                new_args = list(args)  # type: ignore[assignment]
            deps[a.key] = None
            new_args[i] = Ref(a.key)  # type: ignore[index]
        elif t in _CONTAINERS or isinstance(a, tuple):
            found = _replace_nested(a, deps, host)
            if found is not a:
                deep = True
                if new_args is args:
                    new_args = list(args)  # type: ignore[assignment]
                new_args[i] = found  # type: ignore[index]
    new_kwargs = kwargs
    for name, v in kwargs.items():
        t = type(v)
        if t in _ATOMIC:
            continue
        if t in _reference_types:
            if v.host is not host:
                raise ForeignReference(v)
            if new_kwargs is kwargs:
                new_kwargs = dict(kwargs)
            deps[v.key] = None
            new_kwargs[name] = Ref(v.key)
        elif t in _CONTAINERS or isinstance(v, tuple):
            found = _replace_nested(v, deps, host)
            if found is not v:
                deep = True
                if new_kwargs is kwargs:
                    new_kwargs = dict(kwargs)
                new_kwargs[name] = found
    if new_args is not args:
        new_args = tuple(new_args)
    return new_args, new_kwargs, tuple(deps), deep


def _replace_nested(obj: Any, deps: dict[str, None], host: Any) -> Any:
    """Return ``obj`` itself when it holds no handle, else a copy with Refs."""
    t = type(obj)
    if t in _reference_types:
        if obj.host is not host:
            raise ForeignReference(obj)
        deps[obj.key] = None
        return Ref(obj.key)
    if t is dict:
        changed = False
        out = {}
        for k, v in obj.items():
            nv = _replace_nested(v, deps, host) if type(v) not in _ATOMIC else v
            changed |= nv is not v
            out[k] = nv
        return out if changed else obj
    if t in (list, set, frozenset) or isinstance(obj, tuple):
        items = [_replace_nested(v, deps, host) if type(v) not in _ATOMIC else v for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return _rebuild(obj, items)
    return obj


def _rebuild(template: Any, items: list[Any]) -> Any:
    t = type(template)
    if t is list:
        return items
    if hasattr(template, "_fields"):  # namedtuple
        return t(*items)
    return t(items)


def substitute(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], values: Mapping[str, Any], deep: bool
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace every :class:`Ref` in ``args``/``kwargs`` with its value."""
    if deep:
        return (
            tuple(_sub_nested(a, values) for a in args),
            {k: _sub_nested(v, values) for k, v in kwargs.items()},
        )
    return (
        tuple(values[a.key] if type(a) is Ref else a for a in args),
        {k: values[v.key] if type(v) is Ref else v for k, v in kwargs.items()},
    )


def _sub_nested(obj: Any, values: Mapping[str, Any]) -> Any:
    t = type(obj)
    if t is Ref:
        return values[obj.key]
    if t in _ATOMIC:
        return obj
    if t is dict:
        return {k: _sub_nested(v, values) for k, v in obj.items()}
    if t in (list, set, frozenset) or isinstance(obj, tuple):
        return _rebuild(obj, [_sub_nested(v, values) for v in obj])
    return obj


# --------------------------------------------------------------------------- tokens


def tokenize(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """A deterministic token for a pure call: equal calls give equal tokens.

    The callable counts by what it is (:func:`~asyncflow_graph.tokens.callable_identity`:
    code, closure values, bound object), not by its name. Objects that cannot be
    normalized deterministically fall back to their identity, which keeps keys
    unique (never wrongly shared) at the price of no sharing: the node holds the
    object, so its id is not reused while the key exists."""
    h = hashlib.blake2b(digest_size=12)
    seen: set[int] = set()
    h.update(_normalize(func, seen).encode())
    for a in args:
        h.update(b"\x00" + _normalize(a, seen).encode())
    for k in sorted(kwargs):
        h.update(b"\x01" + k.encode() + b"=" + _normalize(kwargs[k], seen).encode())
    return h.hexdigest()


def _normalize(obj: Any, seen: set[int]) -> str:
    t = type(obj)
    if t in _ATOMIC:
        return f"{t.__name__}:{obj!r}"
    if t is Ref:
        return f"ref:{obj.key}"
    if id(obj) in seen:  # a container or closure that holds itself
        return "cycle"
    seen.add(id(obj))
    try:
        return _normalize_composite(obj, t, seen)
    finally:
        seen.discard(id(obj))


def _normalize_composite(obj: Any, t: type, seen: set[int]) -> str:
    if t in (list, tuple):
        return f"{t.__name__}[{','.join(_normalize(v, seen) for v in obj)}]"
    if t in (set, frozenset):
        return f"set[{','.join(sorted(_normalize(v, seen) for v in obj))}]"
    if t is dict:
        items = sorted((_normalize(k, seen), _normalize(v, seen)) for k, v in obj.items())
        return "dict{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    identity = callable_identity(obj)
    if identity is not None:
        label, values = identity
        return f"{label}({','.join(_normalize(v, seen) for v in values)})"
    try:
        return "pickle:" + hashlib.blake2b(pickle.dumps(obj, protocol=5)).hexdigest()
    except Exception:
        return f"id:{id(obj)}"


def iter_refs(obj: Any) -> Iterable[str]:
    """Keys of every Ref inside ``obj`` (used by tools, not the hot path)."""
    t = type(obj)
    if t is Ref:
        yield obj.key
    elif t is dict:
        for v in obj.values():
            yield from iter_refs(v)
    elif t in (list, set, frozenset) or isinstance(obj, tuple):
        for v in obj:
            yield from iter_refs(v)

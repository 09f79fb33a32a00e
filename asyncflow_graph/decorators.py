"""Decorators: turn a function into a :class:`TaskDefinition` whose calls add
nodes to an engine's graph and return handles."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigurationError, UnknownOptionError, shown
from .spec import (
    EMPTY_MAPPING,
    GENERATION_OPTIONS,
    ForeignReference,
    Node,
    TaskKind,
    TaskOptions,
    extract_refs,
    tokenize,
)

if TYPE_CHECKING:
    import itertools
    from contextvars import ContextVar


class GraphBuilder(Protocol):
    """What a TaskDefinition needs from its owner: an engine's intake, or the
    script face's builder of unbound nodes. ``scope`` holds (workflow id, key of
    the enclosing block) of the calling code; ``counter`` numbers the keys
    (``task.000001``). Both are plain attributes: every call reads them."""

    scope: ContextVar[tuple[str | None, str | None] | None]
    counter: itertools.count[int]

    def foreign(self, handle: Any, task: str) -> Exception:
        """The error for ``handle``, of another builder, passed to ``task``."""

    def existing(self, key: str) -> Any:
        """The handle of ``key`` if it exists (pure calls share one node)."""

    def add(self, node: Node) -> Any:
        """Add ``node``; returns its handle."""


__all__ = ["GraphBuilder", "TaskDefinition", "make_definition"]

_PREFIX = {
    TaskKind.FUNCTION: "task",
    TaskKind.EXECUTABLE: "task",
    TaskKind.PROMPT: "task",
    TaskKind.BLOCK: "block",
}


class TaskDefinition:
    """A decorated function. Calling it adds one node and returns its handle."""

    __slots__ = ("__dict__", "_builder", "_prefix", "func", "kind", "name", "options")

    def __init__(
        self, builder: GraphBuilder, func: Callable[..., Any], kind: TaskKind, options: TaskOptions
    ) -> None:
        self._builder = builder
        self.func = func
        self.kind = kind
        self.options = options
        self.name = getattr(func, "__name__", type(func).__name__)
        self._prefix = _PREFIX[kind]
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        options = self.options
        workflow_id = None
        if kwargs:
            if "task_description" in kwargs:
                desc = kwargs.pop("task_description")
                if not isinstance(desc, dict):
                    raise TypeError(
                        f"task_description= of {self.name!r} must be a dict, got "
                        f"{type(desc).__name__}"
                    )
                options = options.with_description(desc)
                _check_block_options(self.kind, options, self.func)
            workflow_id = kwargs.pop("workflow_id", None)
        deps: tuple[str, ...] = ()
        deep = False
        builder = self._builder
        if args or kwargs:
            try:
                args, kwargs, deps, deep = extract_refs(args, kwargs, builder)
            except ForeignReference as exc:
                raise builder.foreign(exc.handle, self.name) from None
        scope = builder.scope.get()
        parent = None
        if scope is not None:
            if workflow_id is None:
                workflow_id = scope[0]
            parent = scope[1]
        if options.pure:
            key = f"{self.name}-{tokenize(self.func, args, kwargs)}"
            existing = builder.existing(key)
            if existing is not None:
                return existing
        else:
            key = f"{self._prefix}.{next(builder.counter):06d}"
        node = Node(
            key,
            self.name,
            self.kind,
            self.func,
            args,
            kwargs or EMPTY_MAPPING,
            deps,
            options,
            workflow_id,
            parent,
            deep,
        )
        return builder.add(node)

    def __repr__(self) -> str:
        return f"<{self.kind.value} task {self.name!r}>"


_OPTION_NAMES = [f.name for f in dataclasses.fields(TaskOptions)]
_NON_PROMPT_OPTIONS = [n for n in _OPTION_NAMES if n not in GENERATION_OPTIONS]


def build_options(kind: TaskKind, options: dict[str, Any]) -> TaskOptions:
    """TaskOptions from decorator keywords; an unknown keyword names the valid ones."""
    valid = _OPTION_NAMES if kind is TaskKind.PROMPT else _NON_PROMPT_OPTIONS
    for name in options:
        if name in GENERATION_OPTIONS and kind is not TaskKind.PROMPT:
            raise ConfigurationError(
                f"{name}= is a generation option of @prompt_task (sent to the inference "
                f"server); @{kind.value} tasks do not take it: remove it, or make the task "
                f"a @prompt_task"
            )
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownOptionError(
                f"unknown option {name!r} for @{kind.value}_task{hint}; valid options: "
                f"{', '.join(valid)}"
            )
    return TaskOptions(**options)


def make_definition(
    builder: GraphBuilder, func: Any, kind: TaskKind, options: dict[str, Any]
) -> TaskDefinition:
    """Validate ``func`` and the decorator options at decoration time."""
    if not callable(func):
        raise TypeError(
            f"@{kind.value}_task expects a function to decorate, got "
            f"{type(func).__name__} {shown(func)}"
        )
    _refuse_generators(func, kind)
    if kind is TaskKind.BLOCK and not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"@block needs an async function (async def {getattr(func, '__name__', '...')}): "
            f"a block body awaits the tasks it creates"
        )
    default_desc: dict[str, Any] = {}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "task_description" in params:
        default = params["task_description"].default
        if default is not inspect.Parameter.empty:
            if not isinstance(default, dict):
                raise TypeError(
                    f"the task_description parameter of {func.__name__!r} must default to a "
                    f"dict, got {shown(default)}"
                )
            default_desc = default
    opts = build_options(kind, options)
    _check_cache_options(func, kind, opts, params)
    if default_desc:
        opts = opts.with_description(default_desc)
    _check_block_options(kind, opts, func)
    return TaskDefinition(builder, func, kind, opts)


def _check_cache_options(
    func: Any, kind: TaskKind, opts: TaskOptions, params: Mapping[str, inspect.Parameter]
) -> None:
    name = getattr(func, "__name__", "...")
    if kind is TaskKind.BLOCK and (opts.cache or opts.cache_version is not None):
        raise ConfigurationError(
            f"@block {name!r} cannot be cached: a block's body creates tasks while it "
            f"runs; give cache=True to the tasks inside it instead"
        )
    if not opts.cache_ignore:
        return
    if kind is not TaskKind.FUNCTION:
        raise ConfigurationError(
            f"cache_ignore= only applies to @function_task; the key of {kind.value} task "
            f"{name!r} is its built {'command' if kind is TaskKind.EXECUTABLE else 'prompt'}"
        )
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [n for n in opts.cache_ignore if n not in params and not open_kwargs]
    if params and unknown:
        raise ConfigurationError(
            f"cache_ignore= names {', '.join(map(repr, unknown))}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
            f"{name!r} (parameters: {', '.join(params)})"
        )


def _refuse_generators(func: Any, kind: TaskKind) -> None:
    """A task has one value; a generator function called as a task would return
    an unstarted generator (its body never runs)."""
    call = func if inspect.isroutine(func) or isinstance(func, functools.partial) else None
    call = call or getattr(func, "__call__", None)  # noqa: B004 - a callable object's method
    if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
        what = "an async generator" if inspect.isasyncgenfunction(call) else "a generator"
        name = getattr(func, "__name__", type(func).__name__)
        raise TypeError(
            f"@{kind.value}{'' if kind is TaskKind.BLOCK else '_task'} got {what} function "
            f"({name!r}, it uses yield): a task returns one value, and calling a generator "
            f"function runs none of its body. Return a list instead (e.g. `return "
            f"list(...)`, or `[x async for x in ...]`)"
        )


def _check_block_options(kind: TaskKind, options: TaskOptions, func: Any) -> None:
    if kind is TaskKind.BLOCK and options.retries:
        name = getattr(func, "__name__", "...")
        raise ConfigurationError(
            f"@block({name!r}) does not take retries=: running a block body again would "
            f"create its tasks a second time. Give retries= to the tasks inside the block "
            f"instead (timeout= works on blocks)"
        )

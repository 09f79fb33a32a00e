"""The one exception tree of asyncflow_graph.

Every error the library raises derives from :class:`AsyncFlowGraphError`; where a
built-in type is what AsyncFlow users catch (``KeyError`` for an unknown backend,
``NotImplementedError`` for prompts on a compute backend, ``TimeoutError``), the
class also derives from that built-in so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized

#: how much of a user's value an error message shows (then its size)
SHOWN = 200


def shorten(text: str, limit: int = SHOWN) -> str:
    """``text``, or its start and its length when longer than ``limit``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: object, limit: int = SHOWN) -> str:
    """``repr(value)`` for an error message: its start and its size when long (a
    1 MB return value makes a short message, not a 1 MB one)."""
    try:
        text = repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} whose repr() failed: {type(exc).__name__}>"
    if len(text) <= limit:
        return text
    if isinstance(value, str | bytes | bytearray):
        unit = "characters" if isinstance(value, str) else "bytes"
        size = f"{type(value).__name__} of {len(value):,} {unit}"
    elif isinstance(value, Sized):
        size = f"{type(value).__name__} of {len(value):,} items"
    else:
        size = f"{type(value).__name__}, repr of {len(text):,} characters"
    return f"{text[:limit]}... ({size})"


__all__ = [
    "AsyncFlowGraphError",
    "BackendError",
    "BackendNotFoundError",
    "CacheCorruptError",
    "CommandFailedError",
    "ConfigurationError",
    "DependencyFailureError",
    "EngineClosedError",
    "EngineError",
    "MissingInputError",
    "PromptNotSupportedError",
    "SerializationError",
    "TaskBuildError",
    "TaskTimeoutError",
    "UnknownOptionError",
    "shorten",
    "shown",
]


class AsyncFlowGraphError(Exception):
    """Root of every error raised by asyncflow_graph."""


class ConfigurationError(AsyncFlowGraphError, ValueError):
    """Bad arguments to the engine, a decorator or a backend (raised at once)."""


class UnknownOptionError(ConfigurationError, TypeError):
    """A decorator got a keyword it does not know (a TypeError, as Python's own)."""


class MissingInputError(AsyncFlowGraphError, FileNotFoundError):
    """An ``InputFile`` neither exists nor is produced by a task it depends on."""


class BackendNotFoundError(AsyncFlowGraphError, KeyError):
    """A task was routed to a backend name the engine does not know.

    Derives from ``KeyError`` as AsyncFlow documents; ``str()`` gives the plain
    message instead of ``KeyError``'s quoted repr.
    """

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(
            f"no backend named {name!r} is registered with this engine "
            f"(registered: {', '.join(map(repr, self.known)) or 'none'}); pass a backend "
            f"with name={name!r} to WorkflowEngine.create(backend=[...]) or fix the "
            f"task's backend= option"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PromptNotSupportedError(AsyncFlowGraphError, NotImplementedError):
    """A prompt task was routed to a backend that cannot serve prompts."""


class SerializationError(AsyncFlowGraphError, TypeError):
    """A callable or value cannot be shipped to a process or remote backend."""


class TaskBuildError(AsyncFlowGraphError, ValueError):
    """An executable or prompt builder returned something unusable."""


class CommandFailedError(AsyncFlowGraphError, RuntimeError):
    """An executable task exited with a non-zero status."""

    def __init__(self, command: str, exit_code: int, stderr: str, stdout: str = "") -> None:
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout
        tail = stderr.strip()[-2000:] or "(no stderr)"
        super().__init__(f"command {shorten(repr(command))} exited with status {exit_code}: {tail}")


class TaskTimeoutError(AsyncFlowGraphError, TimeoutError):
    """A task ran longer than its ``timeout`` option."""


class BackendError(AsyncFlowGraphError, RuntimeError):
    """A backend misbehaved (failed to submit, lost a task, broke its protocol)."""


class CacheCorruptError(AsyncFlowGraphError, OSError):
    """A cache entry could not be read back (torn, altered or unpicklable); it has
    been removed, so the next run recomputes the task."""


class MissingDependencyError(AsyncFlowGraphError, ImportError):
    """An optional dependency a feature needs is not installed; the message names
    the extra that installs it."""


def missing_dependency(package: str, extra: str, feature: str) -> MissingDependencyError:
    """The error for ``feature`` when ``package`` is missing (raise it ``from`` the
    ImportError): ``pip install 'asyncflow-graph[extra]'``."""
    return MissingDependencyError(
        f"{feature} needs the {package!r} package, which is not installed: "
        f"pip install 'asyncflow-graph[{extra}]' (or pip install {package})"
    )


class EngineClosedError(AsyncFlowGraphError, RuntimeError):
    """A task was created on an engine that has been shut down."""


class EngineError(AsyncFlowGraphError, RuntimeError):
    """Something inside asyncflow_graph's own machinery (compiling, dispatching,
    resolving a future) failed for a task. The task ends with this error, which
    names it and the internal cause (also its ``__cause__``); every other task
    runs on."""


class DependencyFailureError(AsyncFlowGraphError):
    """A task did not run because a task it depends on failed.

    ``failed_dependencies`` names the failed upstream tasks and ``root_cause`` is the
    first failed dependency's exception (itself a ``DependencyFailureError`` further
    down a chain); it is also ``__cause__`` so tracebacks show the chain. ``origin``
    is the exception that started it all: the end of the ``root_cause`` chain, which
    the message names (however long the chain, the message stays one line).
    """

    def __init__(
        self,
        message: str,
        failed_dependencies: Sequence[str] | None = None,
        root_cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failed_dependencies = list(failed_dependencies or ())
        self.root_cause = root_cause
        self.origin: BaseException | None = getattr(root_cause, "origin", None) or root_cause
        if root_cause is not None:
            self.__cause__ = root_cause

    def __str__(self) -> str:
        origin = self.origin
        if origin is None:
            return self.message
        return f"{self.message} (root cause: {type(origin).__name__}: {shorten(str(origin))})"

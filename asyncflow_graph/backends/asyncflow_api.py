"""AsyncFlow's backends API on the built-in backends, for code that drives them directly.

A RHAPSODY ``Session``, a test or a user script may drive ``NoopExecutionBackend`` and
``LocalExecutionBackend`` the way AsyncFlow's own are driven: ``register_callback(func)``,
``await submit_tasks([task_dict, ...])``, ``await cancel_task(uid)``, ``await shutdown()``,
with ``func(task, state)`` called for ``RUNNING``/``DONE``/``FAILED``/``CANCELED``. The
engine itself drives them through the native protocol (units, a ``Reporter``), which
costs a fraction per task; but when a user's subclass overrides one of these methods
(:func:`asyncflow_overrides`), the engine drives that backend through this API instead,
so the override is what runs.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..protocol import Command

if TYPE_CHECKING:
    from ..protocol import BackendContext

__all__ = [
    "API_METHODS",
    "AsyncFlowBackendAPI",
    "StateMapper",
    "asyncflow_overrides",
    "command_of",
    "mark_attached",
]

#: the methods of AsyncFlow's backends API; overriding one makes the engine use it
API_METHODS = (
    "submit_tasks",
    "cancel_task",
    "cancel_all_tasks",
    "shutdown",
    "register_callback",
    "build_task",
    "task_state_cb",
    "get_task_states_map",
    "link_explicit_data_deps",
    "link_implicit_data_deps",
)

#: shell tokens a re-joined command line keeps bare (else they would be quoted)
_SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ">", ">>", "<", "<<", "2>", "2>&1"})


class StateMapper:
    """The task states a backend reports (RHAPSODY spells cancelled ``CANCELED``)."""

    DONE = "DONE"
    RUNNING = "RUNNING"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    terminal_states = frozenset({DONE, CANCELED, FAILED})


def _no_callback(task: dict[str, Any], state: str) -> None:
    """The callback before ``register_callback``: states go nowhere, as in AsyncFlow."""


class AsyncFlowBackendAPI:
    """Mixin of the built-in backends: AsyncFlow's attributes and no-op hooks.

    ``_work_dir`` is the cwd until an engine attaches the backend (then
    ``{engine work_dir}/{engine uid}``), ``is_attached`` / ``attached_to`` record the
    attachments. Neither built-in backend moves data, so both data-linking flags are
    False and the engine never calls the linking hooks."""

    supports_implicit_data_linking = False
    supports_explicit_data_linking = False

    tasks: dict[str, dict[str, Any]]
    _work_dir: str
    is_attached: bool
    attached_to: list[str]
    _task_callback: Callable[[dict[str, Any], str], Any]

    def _init_asyncflow_api(self) -> None:
        self.tasks = {}
        self._task_callback = _no_callback
        self._work_dir = os.getcwd()
        self.is_attached = False
        self.attached_to = []

    def register_callback(self, func: Callable[[dict[str, Any], str], Any]) -> None:
        """``func(task_dict, state)`` is called for every state change of a task
        given to :meth:`submit_tasks` (on the event-loop thread)."""
        self._task_callback = func

    def get_task_states_map(self) -> StateMapper:
        return StateMapper()

    def task_state_cb(self, task: dict[str, Any] | None = None, state: str | None = None) -> None:
        """AsyncFlow's hook for backend-side state changes (nothing to do here)."""

    def build_task(self, uid: str, task_desc: dict[str, Any], task_specific_kwargs: Any) -> None:
        """AsyncFlow's hook to prepare a task (nothing to prepare here)."""

    def link_explicit_data_deps(
        self,
        src_task: dict[str, Any] | None = None,
        dst_task: dict[str, Any] | None = None,
        file_name: str | None = None,
        file_path: str | None = None,
    ) -> None:
        """No data to move: tasks share this machine's file system."""

    def link_implicit_data_deps(self, src_task: dict[str, Any], dst_task: dict[str, Any]) -> None:
        """No data to move: tasks share this machine's file system."""

    async def cancel_task(self, uid: str) -> bool:
        """Cancel the submitted task ``uid``; False when there is nothing to cancel."""
        return False

    async def cancel_all_tasks(self) -> int:
        """Cancel every submitted task still running; the number cancelled."""
        cancelled = 0
        for uid in list(self.tasks):
            cancelled += bool(await self.cancel_task(uid))
        return cancelled

    async def shutdown(self) -> None:
        """Cancel what runs and release every resource (safe to call twice)."""
        await self.close()  # type: ignore[attr-defined]

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()  # a subclass's shutdown() override runs here too


def asyncflow_overrides(backend: object) -> list[str]:
    """The AsyncFlow API methods that ``backend``'s class defines outside this
    package (a user's subclass overriding ``submit_tasks``, ``cancel_task``, ...)."""
    kind = type(backend)
    if not isinstance(backend, AsyncFlowBackendAPI):
        return []
    out = []
    for name in API_METHODS:
        owner = next((c for c in kind.__mro__ if name in vars(c)), None)
        if owner is not None and not owner.__module__.startswith("asyncflow_graph."):
            out.append(name)
    return out


def mark_attached(backend: Any, context: BackendContext) -> None:
    """What attaching to an engine does to an AsyncFlow-style backend: its work
    directory becomes the engine's ``{work_dir}/{uid}`` (the engine decides it),
    ``is_attached`` is set and the engine's uid is appended to ``attached_to``."""
    backend._work_dir = str(context.work_dir)
    backend.is_attached = True
    attached = getattr(backend, "attached_to", None)
    if isinstance(attached, list):
        attached.append(context.engine_uid)
    else:
        backend.attached_to = [context.engine_uid]


def command_of(task: Mapping[str, Any], work_dir: str) -> Command:
    """The command of an executable task dict: the engine's own when it put one
    there (``_command``, exactly as built), else ``executable`` + ``arguments``
    with ``task_backend_specific_kwargs`` (``shell`` - default True, as AsyncFlow's
    local backend -, ``cwd``, ``env``) and ``capture_stdio`` (stdout and stderr in
    ``{work_dir}/{uid}.stdout`` / ``.stderr``, the result is the stdout path)."""
    built = task.get("_command")
    if isinstance(built, Command):
        return built
    executable = task.get("executable")
    if not executable:
        raise ValueError(
            f"task {task.get('uid')!r} has neither a function, an executable nor a prompt"
        )
    argv = [str(executable), *(os.fspath(a) for a in task.get("arguments") or ())]
    options = task.get("task_backend_specific_kwargs") or {}
    shell = _shell_line(argv) if options.get("shell", True) else None
    env = options.get("env")
    if env is not None:
        env = {**os.environ, **{str(k): str(v) for k, v in dict(env).items()}}
    cwd = options.get("cwd")
    out = err = None
    if task.get("capture_stdio"):
        base = os.path.join(work_dir, str(task.get("uid")))
        out, err = f"{base}.stdout", f"{base}.stderr"
    return Command(
        None if shell is not None else tuple(argv),
        shell,
        None if cwd is None else os.fspath(cwd),
        env,
        out,
        err,
    )


def _shell_line(argv: list[str]) -> str:
    """Re-join shlex tokens for the shell. Tokens with whitespace or quotes are
    quoted (AsyncFlow joins with spaces, so ``echo "a   b"`` printed ``a b``);
    operators, variables and globs stay as they are, so pipes and redirections work."""
    return " ".join(
        a if a in _SHELL_OPERATORS or not _needs_quotes(a) else shlex.quote(a) for a in argv
    )


def _needs_quotes(token: str) -> bool:
    return not token or any(c.isspace() or c in "'\"" for c in token)

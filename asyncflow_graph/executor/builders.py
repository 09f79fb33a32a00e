"""Executable and prompt builders: run on the engine's loop with the resolved
values of their inputs, then turned into a backend payload (a :class:`Command` or
the prompt text)."""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..coro import first_step
from ..errors import TaskBuildError, shown
from ..protocol import Command, Work
from ..spec import Node, TaskKind, bind

if TYPE_CHECKING:
    import asyncio

    from .looptasks import LoopTasks
    from .state import RunState

__all__ = ["BuildHost", "Builders", "make_command", "make_payload", "split_command"]


class BuildHost(Protocol):
    """What the builders need of the executor."""

    loop: asyncio.AbstractEventLoop
    work_dir: Path
    state: RunState

    loop_tasks: LoopTasks
    payloads: dict[str, Command | str]

    def failed(self, key: str, exc: BaseException) -> None: ...
    def submit(self, name: str, works: list[Work]) -> None: ...


class Builders:
    """Runs builders for one executor and submits what they build."""

    __slots__ = ("_executor",)

    def __init__(self, executor: BuildHost) -> None:
        self._executor = executor

    def build(self, node: Node, work: Work) -> None:
        """Run ``node``'s builder with ``work``'s inputs, then submit the payload."""
        executor = self._executor
        try:  # a builder that cannot even be called (wrong arguments) fails its task
            args, kwargs = bind(node, work.inputs)
            if inspect.iscoroutinefunction(node.func):
                # First step here, in creation order (a builder that never suspends
                # costs no Task and no loop turn); only one that suspends gets a Task.
                out, rest = first_step(node.func(*args, **kwargs))
                if rest is not None:
                    then = partial(self._built, node, work)
                    executor.loop_tasks.run(node.key, rest[0], then, context=rest[1])
                    return
            else:
                out = node.func(*args, **kwargs)
        except Exception as exc:
            executor.failed(node.key, exc)
            return
        self._submit(node, work, out)

    def _built(self, node: Node, work: Work, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return  # cancel() already ended the key
        exc = task.exception()
        if exc is not None:
            self._executor.failed(node.key, exc)
        else:
            self._submit(node, work, task.result())

    def _submit(self, node: Node, work: Work, out: Any) -> None:
        executor = self._executor
        if not executor.state.is_open(node.key):
            return
        try:
            upstream = [work.inputs[d] for d in node.deps if d in work.inputs]
            payload = make_payload(node, out, executor.work_dir, upstream)
        except Exception as exc:
            executor.failed(node.key, exc)
            return
        executor.payloads[node.key] = payload  # the handle's description shows it
        executor.submit(work.unit.backend, [Work(work.unit, work.nodes, work.inputs, payload)])


def make_payload(
    node: Node, out: Any, work_dir: Path, upstream: Sequence[Any] = ()
) -> Command | str:
    if node.kind is TaskKind.PROMPT:
        if not isinstance(out, str) or not out.strip():
            raise TaskBuildError(
                f"prompt task {node.name!r} must return a non-empty string prompt, got {shown(out)}"
            )
        return out
    return make_command(node, out, work_dir, upstream)


def make_command(node: Node, out: Any, work_dir: Path, upstream: Sequence[Any] = ()) -> Command:
    """A command string runs through the shell unless ``shell=False`` was asked
    for (then it is split as a shell would, :func:`split_command`, each upstream
    value staying one argument); an argv list never goes through a shell."""
    desc = node.options.task_description
    if isinstance(out, str):
        if not out.strip():
            raise TaskBuildError(
                f"executable task {node.name!r} must return a non-empty command string "
                f"or argv list, got {shown(out)}"
            )
        if desc.get("shell", True):
            argv, shell = None, out
        else:
            argv, shell = split_command(out, upstream), None
    elif (
        isinstance(out, list | tuple) and out and all(isinstance(a, str | os.PathLike) for a in out)
    ):
        argv, shell = tuple(os.fspath(a) for a in out), None
    else:
        raise TaskBuildError(
            f"executable task {node.name!r} must return a non-empty command string or a "
            f"non-empty list of str arguments, got {shown(out)}"
        )
    env = desc.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise TaskBuildError(f"task_description['env'] of {node.name!r} must be a dict")
        env = {**os.environ, **{str(k): str(v) for k, v in env.items()}}
    cwd = desc.get("cwd")
    stdout_path = stderr_path = None
    if node.options.capture_stdio:
        stdout_path = str(work_dir / f"{node.key}.stdout")
        stderr_path = str(work_dir / f"{node.key}.stderr")
    return Command(
        argv, shell, None if cwd is None else os.fspath(cwd), env, stdout_path, stderr_path
    )


#: characters that make ``shlex.split`` cut or change a value
_SPLITS = frozenset(" \t\n\r\x0b\x0c'\"\\")


def split_command(command: str, upstream: Sequence[Any] = ()) -> tuple[str, ...]:
    """``command`` split into arguments as a POSIX shell would, except that every
    upstream value substituted into it stays one argument (or part of one), never
    split at its spaces or changed by its quotes: a file name with a space is one
    file, not two. Quote a value yourself only where the shell would need it."""
    values = sorted(
        {str(os.fspath(v)) for v in upstream if isinstance(v, str | os.PathLike)},
        key=len,
        reverse=True,  # the longest first: a value inside a longer one stays in it
    )
    protected = [v for v in values if v and _SPLITS.intersection(v) and v in command]
    if not protected:
        return tuple(shlex.split(command))
    marks: dict[str, str] = {}
    for i, value in enumerate(protected):
        mark = f"\x00{i}\x00"  # no NUL can be in a command line: the marks are unique
        marks[mark] = value
        command = command.replace(value, mark)
    return tuple(_unmark(arg, marks) for arg in shlex.split(command))


def _unmark(arg: str, marks: dict[str, str]) -> str:
    for mark, value in marks.items():
        arg = arg.replace(mark, value)
    return arg

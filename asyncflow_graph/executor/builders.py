"""Turn what an executable/prompt builder returned into a backend payload."""

from __future__ import annotations

import contextvars
import os
import shlex
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..backends._run import resume
from ..backends.base import Command
from ..errors import TaskBuildError
from ..spec import Node, TaskKind

__all__ = ["first_step", "make_payload"]


def first_step(
    coro: Coroutine[Any, Any, Any],
) -> tuple[Any, tuple[Coroutine[Any, Any, Any], contextvars.Context] | None]:
    """Run a builder coroutine up to its first suspension, in a context of its own
    (as a Task would). ``(value, None)`` when it finished; otherwise ``(None, (rest,
    context))``: ``rest`` continues it inside a Task made with that context. Raises
    what the builder raised."""
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value, None
    return None, (_rest(coro, yielded), context)


async def _rest(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await resume(coro, yielded)


def make_payload(node: Node, out: Any, work_dir: Path) -> Command | str:
    if node.kind is TaskKind.PROMPT:
        if not isinstance(out, str) or not out.strip():
            raise TaskBuildError(
                f"prompt task {node.name!r} must return a non-empty string prompt, got {out!r}"
            )
        return out
    return make_command(node, out, work_dir)


def make_command(node: Node, out: Any, work_dir: Path) -> Command:
    """A command string runs through the shell unless ``shell=False`` was asked
    for (then it is ``shlex.split``); an argv list never goes through a shell."""
    desc = node.options.task_description
    if isinstance(out, str):
        if not out.strip():
            raise TaskBuildError(
                f"executable task {node.name!r} must return a non-empty command string "
                f"or argv list, got {out!r}"
            )
        if desc.get("shell", True):
            argv, shell = None, out
        else:
            argv, shell = tuple(shlex.split(out)), None
    elif (
        isinstance(out, list | tuple) and out and all(isinstance(a, str | os.PathLike) for a in out)
    ):
        argv, shell = tuple(os.fspath(a) for a in out), None
    else:
        raise TaskBuildError(
            f"executable task {node.name!r} must return a non-empty command string or a "
            f"non-empty list of str arguments, got {out!r}"
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

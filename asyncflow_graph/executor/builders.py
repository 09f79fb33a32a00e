"""Turn what an executable/prompt builder returned into a backend payload."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from ..backends.base import Command
from ..errors import TaskBuildError
from ..spec import Node, TaskKind

__all__ = ["make_payload"]


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

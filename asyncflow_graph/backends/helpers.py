"""Helpers for writing backends: running a unit's calls and commands.

Every built-in backend uses them, and a third-party backend can too (see
``docs/backends.md``):

* :func:`calls_of` reduces a :class:`~asyncflow_graph.protocol.Work` to picklable
  :class:`~asyncflow_graph.spec.Call` values; :func:`run_chain` runs them back to
  back — a plain function, so it runs in a thread, in a worker process (shipped
  with cloudpickle, or :func:`run_pickled_chain`) or on a remote worker alike — and
  returns the outcomes to hand to ``Reporter.ended``;
* :func:`run_command` / :func:`run_command_sync` run a built
  :class:`~asyncflow_graph.protocol.Command` (a child of the loop, or blocking);
* :func:`resume` continues a coroutine whose first step ran outside a Task;
* :class:`~asyncflow_graph.protocol.ThreadSafeReporter` reports from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from ..coro import resume
from ..errors import CommandFailedError, SerializationError
from ..protocol import Command, Outcome, ThreadSafeReporter, Work
from ..spec import Call, call

__all__ = [
    "Call",
    "ThreadSafeReporter",
    "calls_of",
    "picklable_outcomes",
    "resume",
    "run_chain",
    "run_command",
    "run_command_sync",
    "run_pickled_chain",
]


def calls_of(work: Work) -> list[Call]:
    """The nodes of ``work`` as picklable calls, in order."""
    return [n.to_call() for n in work.nodes]


def run_chain(
    calls: Sequence[Call], inputs: Mapping[str, Any], stop: Container[str] | None = None
) -> list[Outcome]:
    """Run ``calls`` (a chain: each later call takes the one before) back to back
    with ``inputs`` (the work's input values); stop at the first failure, or before
    a call whose key is in ``stop`` (cancelled meanwhile: its body never starts).
    Coroutine functions get a private event loop (we are off the engine's loop
    here). Returns ``(key, ok, value-or-exception)`` outcomes, in order."""
    values: Mapping[str, Any] = inputs
    out: list[Outcome] = []
    for c in calls:
        if stop is not None and c.key in stop:
            return out
        try:
            value = call(c, values)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except Exception as exc:
            out.append((c.key, False, exc))
            return out
        out.append((c.key, True, value))
        values = {c.key: value}
    return out


def run_pickled_chain(payload: bytes) -> bytes:
    """Process-pool entry point: cloudpickle in, cloudpickle out.

    A value or exception that cannot be pickled back becomes a clear error for
    that task instead of breaking the pool."""
    import cloudpickle

    # (calls, inputs) or (calls, inputs, stop): stop, e.g. a FlagDirectory, is asked
    # before each call as run_chain does
    calls, inputs, *stop = cloudpickle.loads(payload)
    outcomes = run_chain(calls, inputs, stop[0] if stop else None)
    try:
        return bytes(cloudpickle.dumps(outcomes))
    except Exception:
        return bytes(cloudpickle.dumps(picklable_outcomes(outcomes)))


def picklable_outcomes(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """``outcomes`` up to the first whose value or exception cannot be pickled back
    from a worker process, which becomes a SerializationError naming its task (the
    chain stops there, as it would have on a failure)."""
    import cloudpickle

    safe: list[Outcome] = []
    for key, ok, value in outcomes:
        try:
            cloudpickle.dumps(value)
            safe.append((key, ok, value))
        except Exception as exc:
            err = SerializationError(
                f"the {'result' if ok else 'exception'} of task {key!r} "
                f"({type(value).__name__}) cannot be pickled back from the worker "
                f"process: {exc}"
            )
            safe.append((key, False, err))
            break
    return safe


#: each command leads its own process group, so that stopping it stops what it started
_GROUP: dict[str, Any] = {"process_group": 0} if os.name == "posix" else {}


def _kill_group(proc: Any) -> None:
    """Kill ``proc`` and every process in its group (a shell's children too)."""
    if proc.returncode is not None and not _GROUP:
        return
    try:
        if _GROUP:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass  # ended already


async def run_command(cmd: Command) -> str:
    """Run ``cmd`` as a child process of the engine's loop; killed if cancelled,
    with every process it started (its process group).

    Returns stdout as a string, or the stdout file's path with capture_stdio."""
    out_f = err_f = None
    try:
        if cmd.stdout_path is not None and cmd.stderr_path is not None:
            os.makedirs(os.path.dirname(cmd.stdout_path), exist_ok=True)
            out_f = open(cmd.stdout_path, "wb")  # noqa: SIM115 - closed in finally
            err_f = open(cmd.stderr_path, "wb")  # noqa: SIM115
        options: dict[str, Any] = {
            "stdout": out_f if out_f is not None else asyncio.subprocess.PIPE,
            "stderr": err_f if err_f is not None else asyncio.subprocess.PIPE,
            "stdin": asyncio.subprocess.DEVNULL,
            "cwd": cmd.cwd,
            "env": cmd.env,
            **_GROUP,
        }
        if cmd.shell is not None:
            proc = await asyncio.create_subprocess_shell(cmd.shell, **options)
        else:
            proc = await asyncio.create_subprocess_exec(*(cmd.argv or ()), **options)
        try:
            out_b, err_b = await proc.communicate()
        except asyncio.CancelledError:
            _kill_group(proc)
            # Read the pipes to their end (the group is gone, so they close): the
            # transport then closes itself now, not in a finalizer after the loop.
            await asyncio.shield(proc.communicate())
            raise
    finally:
        for f in (out_f, err_f):
            if f is not None:
                f.close()
    return _command_result(cmd, proc.returncode or 0, out_b, err_b)


def run_command_sync(cmd: Command, stop: Callable[[], bool] | None = None) -> str:
    """The same as :func:`run_command`, blocking (for threads and remote workers).
    ``stop`` is asked every :data:`STOP_POLL` seconds while the command runs; when
    it answers True (the task was cancelled) the command's process group is killed
    and :class:`~asyncflow_graph.errors.CommandFailedError` raised."""
    argv = cmd.shell if cmd.shell is not None else list(cmd.argv or ())
    with contextlib.ExitStack() as files:
        if cmd.stdout_path is not None and cmd.stderr_path is not None:
            os.makedirs(os.path.dirname(cmd.stdout_path), exist_ok=True)
            out: Any = files.enter_context(open(cmd.stdout_path, "wb"))
            err: Any = files.enter_context(open(cmd.stderr_path, "wb"))
        else:
            out = err = subprocess.PIPE
        proc = subprocess.Popen(
            argv,
            shell=cmd.shell is not None,
            stdout=out,
            stderr=err,
            cwd=cmd.cwd,
            env=cmd.env,
            stdin=subprocess.DEVNULL,
            **_GROUP,
        )
        with proc:
            out_b, err_b = _wait(proc, cmd, stop)
    return _command_result(cmd, proc.returncode, out_b, err_b)


#: seconds between two questions to run_command_sync's ``stop``
STOP_POLL = 0.2


def _wait(proc: subprocess.Popen[bytes], cmd: Command, stop: Callable[[], bool] | None) -> Any:
    while True:
        try:
            return proc.communicate(timeout=None if stop is None else STOP_POLL)
        except subprocess.TimeoutExpired:
            if stop is not None and stop():
                _kill_group(proc)
                proc.communicate()
                raise CommandFailedError(cmd.text, -signal.SIGKILL, "cancelled: killed") from None
        except BaseException:  # interrupted: leave nothing running
            _kill_group(proc)
            raise


def _command_result(cmd: Command, code: int, out_b: bytes | None, err_b: bytes | None) -> str:
    if cmd.stdout_path is not None:
        if code != 0:
            with open(cmd.stderr_path or os.devnull, "rb") as f:
                err_b = f.read()
            raise CommandFailedError(cmd.text, code, _text(err_b))
        return cmd.stdout_path
    if code != 0:
        raise CommandFailedError(cmd.text, code, _text(err_b), _text(out_b))
    return _text(out_b)


def _text(data: bytes | None) -> str:
    return data.decode(errors="replace") if data else ""

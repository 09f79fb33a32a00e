"""AsyncFlow's backends API on the built-in backends (issue 18, items 1-3).

A RHAPSODY-style caller drives ``NoopExecutionBackend`` and ``LocalExecutionBackend``
with ``register_callback`` + ``submit_tasks`` + ``cancel_task`` + ``shutdown``; a
user subclass overriding one of those methods has its override used by the engine;
AsyncFlow-style backends receive AsyncFlow's task dicts.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asyncflow_style_backend import AsyncFlowStyleBackend

from asyncflow_graph import (
    InputFile,
    LocalExecutionBackend,
    NoopExecutionBackend,
    OutputFile,
    WorkflowEngine,
)
from asyncflow_graph.backends import StateMapper
from asyncflow_graph.backends.asyncflow_api import asyncflow_overrides


class Caller:
    """What a RHAPSODY Session does with a backend: register a callback, submit
    dicts, wait for each task's terminal state."""

    def __init__(self, backend: Any) -> None:
        self.states: dict[str, list[str]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        backend.register_callback(self.callback)

    def callback(self, task: dict[str, Any], state: str) -> None:
        uid = task["uid"]
        self.states.setdefault(uid, []).append(state)
        self.tasks[uid] = task
        if state == "RUNNING":
            self.started.setdefault(uid, asyncio.Event()).set()
        if state in StateMapper.terminal_states:
            self._ended.setdefault(uid, asyncio.Event()).set()

    async def ended(self, *uids: str) -> None:
        await asyncio.gather(*(self._ended.setdefault(u, asyncio.Event()).wait() for u in uids))

    async def running(self, uid: str) -> None:
        await self.started.setdefault(uid, asyncio.Event()).wait()


def fn_task(uid: str, func: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"uid": uid, "function": func, "args": args, "kwargs": kwargs, "executable": None}


def exe_task(uid: str, executable: str, *arguments: str, **extra: Any) -> dict[str, Any]:
    return {"uid": uid, "function": None, "executable": executable, "arguments": list(arguments)}


# -- NoopExecutionBackend driven directly ----------------------------------------------------


async def test_noop_backend_driven_directly() -> None:
    backend = NoopExecutionBackend()
    assert backend.name == "default" and backend.tasks == {}
    assert backend._work_dir == os.getcwd()
    assert backend.is_attached is False and backend.attached_to == []
    assert backend.state() == "IDLE"
    states = backend.get_task_states_map()
    assert (states.DONE, states.FAILED, states.CANCELED, states.RUNNING) == (
        "DONE",
        "FAILED",
        "CANCELED",
        "RUNNING",
    )
    assert states.terminal_states == {"DONE", "FAILED", "CANCELED"}
    caller = Caller(backend)
    assert backend.build_task("t", {}, {}) is None
    assert backend.task_state_cb({"uid": "t"}, "DONE") is None

    tasks = [
        fn_task("t1", lambda: 1),
        exe_task("t2", "rm", "-rf", "/"),
        {"uid": "t3", "prompt": "hi"},
    ]
    assert await backend.submit_tasks(tasks) is None
    assert caller.states == {"t1": ["DONE"], "t2": ["DONE"], "t3": ["DONE"]}
    for uid in ("t1", "t2"):
        assert caller.tasks[uid]["stdout"] == caller.tasks[uid]["return_value"] == "Dummy Output"
    assert caller.tasks["t3"]["stdout"] == "Dummy Prompt Output"
    assert await backend.cancel_task("t1") is False  # nothing runs: nothing to cancel
    assert backend.link_implicit_data_deps(tasks[0], tasks[1]) is None
    assert backend.link_explicit_data_deps(src_task=None, dst_task=tasks[1], file_name="x") is None
    await backend.shutdown()
    await backend.shutdown()  # twice is fine


# -- LocalExecutionBackend driven directly ----------------------------------------------------


async def test_local_backend_driven_directly(tmp_path: Path) -> None:
    async with LocalExecutionBackend() as backend:
        assert isinstance(backend.executor, ThreadPoolExecutor)
        assert backend._work_dir == os.getcwd() and not backend.is_attached
        caller = Caller(backend)
        gate = asyncio.Event()

        async def add(a: int, b: int = 0) -> int:
            return a + b

        def blocking(x: int) -> int:  # a plain function runs in the pool
            return x * 10

        async def wait_for_gate() -> str:
            await gate.wait()
            return "never"

        def boom() -> None:
            raise ValueError("bad value")

        tasks = [
            fn_task("add", add, 1, b=2),
            fn_task("sync", blocking, 4),
            exe_task("echo", "echo", "a   b"),  # shell mode keeps the spaces
            exe_task("fail", "sh", "-c", "echo oops >&2; exit 3"),
            fn_task("boom", boom),
            {"uid": "ask", "prompt": "why?", "function": None},
            fn_task("slow", wait_for_gate),
        ]
        submitted = await backend.submit_tasks(tasks)
        assert len(submitted) == len(tasks)
        assert all(isinstance(t, asyncio.Task) for t in submitted)
        assert set(backend.tasks) == {t["uid"] for t in tasks}
        await caller.ended("add", "sync", "echo", "fail", "boom", "ask")
        await caller.running("slow")

        assert caller.states["add"] == ["RUNNING", "DONE"]
        assert caller.tasks["add"]["return_value"] == 3 and caller.tasks["add"]["stdout"] == "3"
        assert caller.tasks["sync"]["return_value"] == 40
        assert caller.tasks["echo"]["stdout"] == "a   b\n"
        assert caller.states["fail"][-1] == "FAILED"
        assert caller.tasks["fail"]["exit_code"] == 3 and "oops" in caller.tasks["fail"]["stderr"]
        assert isinstance(caller.tasks["boom"]["exception"], ValueError)
        assert caller.states["ask"] == ["FAILED"]
        error = caller.tasks["ask"]["exception"]
        assert isinstance(error, NotImplementedError) and "LocalExecutionBackend" in str(error)

        # ended tasks left backend.tasks; cancelling one of them does nothing
        assert set(backend.tasks) == {"slow"}
        assert await backend.cancel_task("add") is False
        assert await backend.cancel_task("slow") is True
        assert caller.states["slow"] == ["RUNNING", "CANCELED"]
        assert await backend.cancel_task("slow") is False
        await asyncio.wait(submitted)
        assert submitted[-1].cancelled() and backend.tasks == {}

        # cancel_all_tasks counts what it cancelled
        more = await backend.submit_tasks([fn_task(f"w{i}", wait_for_gate) for i in range(3)])
        assert await backend.cancel_all_tasks() == 3
        await asyncio.wait(more)
        assert all(caller.states[f"w{i}"][-1] == "CANCELED" for i in range(3))
    assert backend.state() == "SHUTDOWN"


async def test_local_backend_capture_stdio_and_exec_mode(tmp_path: Path) -> None:
    backend = await LocalExecutionBackend()
    backend._work_dir = str(tmp_path)  # what attaching to an engine would set
    caller = Caller(backend)
    task = exe_task("cap", "echo", "hi")
    task["capture_stdio"] = True
    exec_mode = exe_task("exec", "echo", "$HOME")
    exec_mode["task_backend_specific_kwargs"] = {"shell": False}
    await backend.submit_tasks([task, exec_mode])
    await caller.ended("cap", "exec")
    assert caller.tasks["cap"]["stdout"] == str(tmp_path / "cap.stdout")
    assert (tmp_path / "cap.stdout").read_text() == "hi\n"
    assert caller.tasks["exec"]["stdout"] == "$HOME\n"  # no shell: not expanded
    await backend.shutdown()


async def test_local_backend_process_pool_driven_directly() -> None:
    backend = LocalExecutionBackend(ProcessPoolExecutor(1))
    caller = Caller(backend)
    await backend.submit_tasks([fn_task("sq", pow, 3, 2), fn_task("pid", os.getpid)])
    await caller.ended("sq", "pid")
    assert caller.tasks["sq"]["return_value"] == 9
    assert caller.tasks["pid"]["return_value"] != os.getpid()
    await backend.shutdown()


async def test_local_backend_construction() -> None:
    with pytest.raises(TypeError, match="must be a concurrent.futures.Executor"):
        LocalExecutionBackend(executor=object())  # type: ignore[arg-type]
    pool = ThreadPoolExecutor(2)
    backend = await LocalExecutionBackend.create(pool)
    assert backend.executor is pool and isinstance(backend.executor, Executor)
    assert await backend is backend
    await backend.shutdown()


# -- attaching to an engine -------------------------------------------------------------------


async def test_attaching_sets_work_dir_and_attachment(tmp_path: Path) -> None:
    local, noop, foreign = (
        LocalExecutionBackend(),
        NoopExecutionBackend("ai"),
        AsyncFlowStyleBackend(),
    )
    flow = await WorkflowEngine.create(
        backend=[local, noop, foreign], uid="sess-1", work_dir=tmp_path
    )
    try:
        for b in (local, noop, foreign):
            assert b._work_dir == str(tmp_path / "sess-1")
            assert b.is_attached is True and b.attached_to == ["sess-1"]
        assert os.path.isdir(local._work_dir)
    finally:
        await flow.shutdown()


# -- a user's subclass: its overrides run --------------------------------------------------


class CountingLocal(LocalExecutionBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.cancel_seen = asyncio.Event()
        self.shut_down = 0

    async def submit_tasks(self, tasks: list[dict[str, Any]]) -> list[asyncio.Task[None]]:
        self.submitted.extend(t["uid"] for t in tasks)
        return await super().submit_tasks(tasks)

    async def cancel_task(self, uid: str) -> bool:
        self.cancelled.append(uid)
        self.cancel_seen.set()
        return await super().cancel_task(uid)

    async def shutdown(self) -> None:
        self.shut_down += 1
        await super().shutdown()


async def test_subclass_overrides_are_used_by_the_engine(tmp_path: Path) -> None:
    backend = CountingLocal()
    assert asyncflow_overrides(backend) == ["submit_tasks", "cancel_task", "shutdown"]
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    assert flow.backend is backend
    started = asyncio.Event()

    @flow.function_task
    async def inc(x: int) -> int:
        return x + 1

    @flow.executable_task
    async def shout(word: int) -> str:
        return f"echo 'value is   {word}'"

    @flow.function_task
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    a = inc(1)
    assert await shout(inc(a)) == "value is   3\n"  # the command exactly as built
    h = hang()
    await started.wait()
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h
    await backend.cancel_seen.wait()  # the engine asks the backend in the background
    assert backend.submitted == [a.key, backend.submitted[1], backend.submitted[2], h.key]
    assert backend.cancelled == [h.key]
    await flow.shutdown()
    assert backend.shut_down == 1


async def test_noop_subclass_override_and_non_api_override(tmp_path: Path) -> None:
    class Recording(NoopExecutionBackend):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[str, Any]] = []

        async def submit_tasks(self, tasks: list[dict[str, Any]]) -> None:
            self.seen.extend(tasks)
            await super().submit_tasks(tasks)

    class OnlyState(LocalExecutionBackend):
        def state(self) -> str:  # not AsyncFlow's task API: stays native
            return "CUSTOM"

    assert asyncflow_overrides(OnlyState()) == []
    backend = Recording()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)

    @flow.function_task
    async def work() -> int:
        return 1

    assert await work() == "Dummy Output"
    assert [t["name"] for t in backend.seen] == ["work"]
    await flow.shutdown()


# -- dry run validates builders like AsyncFlow ----------------------------------------------


@pytest.mark.parametrize("bad", [None, "", "   ", 5])
async def test_dry_run_rejects_empty_commands_and_prompts(bad: Any) -> None:
    flow = await WorkflowEngine.create(dry_run=True)

    @flow.executable_task
    async def command() -> Any:
        return bad

    @flow.prompt_task
    async def prompt() -> Any:
        return bad

    with pytest.raises(ValueError, match="non-empty command string"):
        await command()
    with pytest.raises(ValueError, match="non-empty string prompt"):
        await prompt()
    await flow.shutdown()


async def test_dry_run_builders_run_with_resolved_values() -> None:
    seen: list[Any] = []
    compute, ai = NoopExecutionBackend("compute"), NoopExecutionBackend("ai")
    flow = await WorkflowEngine.create(backend=[compute, ai])

    @flow.function_task
    async def load() -> str:
        return "never runs"

    @flow.prompt_task(backend="ai")
    async def summarize(text: str) -> str:
        seen.append(text)  # AsyncFlow's multi-backend example logs from here
        return f"Summarize: {text}"

    assert await summarize(load()) == "Dummy Prompt Output"
    assert seen == ["Dummy Output"]  # the dependency's (dummy) value, not a future
    await flow.shutdown()


async def test_prompt_on_local_backend_names_it(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)

    @flow.prompt_task
    async def ask() -> str:
        return "why?"

    with pytest.raises(NotImplementedError, match="LocalExecutionBackend"):
        await ask()
    await flow.shutdown()


# -- the task dicts an AsyncFlow-style backend receives --------------------------------------


class CancelWatching(AsyncFlowStyleBackend):
    def __init__(self) -> None:
        super().__init__()
        self.cancel_asked: asyncio.Queue[str] = asyncio.Queue()

    async def cancel_task(self, uid: str) -> bool:
        self.cancel_asked.put_nowait(uid)
        return await super().cancel_task(uid)


async def test_task_dicts_carry_asyncflow_metadata(tmp_path: Path) -> None:
    backend = CancelWatching()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    (tmp_path / "in.csv").write_text("1")
    started = asyncio.Event()

    @flow.function_task
    async def produce(src: InputFile, out: OutputFile) -> str:
        return "made"

    @flow.function_task(backend=backend.name)
    async def consume(made: str, out: OutputFile) -> str:
        return made + "!"

    @flow.function_task
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    p = produce(InputFile(tmp_path / "in.csv"), OutputFile("mid.csv"))
    c = consume(p, OutputFile("final.csv"))
    assert await c == "made!"
    sent = {t["uid"]: t for t in backend.received}
    first, second = sent[p.key], sent[c.key]
    assert first["target_backend"] is None  # no backend= on the decorator
    assert second["target_backend"] == backend.name
    assert first["metadata"]["input_files"] == ["in.csv"]
    assert first["metadata"]["output_files"] == ["mid.csv"]
    assert first["metadata"]["dependencies"] == []
    (dep,) = second["metadata"]["dependencies"]
    assert dep["uid"] == p.key and dep["name"] == "produce"
    assert dep["metadata"]["output_files"] == ["mid.csv"]
    assert second["args"][0] == "made"  # values, not futures

    h = hang()
    await started.wait()
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h
    assert await backend.cancel_asked.get() == h.key  # asked through cancel_task(uid)
    await flow.shutdown()

"""The ten newcomer mistakes of docs/errors.md, one test each, in the page's order.

Each test makes the mistake and checks that the message names what is wrong *and* the
fix. tests/test_bad_input.py checks that bad input fails early without disturbing the
engine; where a mistake also appears there (3, 5, 7, 8, 9 and 1), the test here checks
the parts of the message it does not: the suggested fix.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import asyncflow_graph as ag
from asyncflow_graph import (
    InputFile,
    LocalExecutionBackend,
    NoopExecutionBackend,
    OutputFile,
    WorkflowEngine,
)
from asyncflow_graph.errors import (
    AsyncFlowGraphError,
    BackendNotFoundError,
    ConfigurationError,
    DependencyFailureError,
    EngineClosedError,
    MissingInputError,
    PromptNotSupportedError,
    TaskBuildError,
    UnknownOptionError,
)

ERRORS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


@pytest.fixture
async def flow(tmp_path: Path):
    engine = await WorkflowEngine.create(
        backend=[LocalExecutionBackend(name="compute"), NoopExecutionBackend(name="ai")],
        work_dir=tmp_path,
    )
    yield engine
    await engine.shutdown()


def test_the_page_lists_twelve_mistakes() -> None:
    # 11 and 12 (another engine's handle, a generator function) are tested where
    # those rules are: tests/test_identity.py, tests/test_every_future_ends.py
    headings = re.findall(r"^## (\d+)\. ", ERRORS_PAGE.read_text(), re.MULTILINE)
    assert headings == [str(i) for i in range(1, 13)]


# 1 ---------------------------------------------------------------------------------------


async def test_01_engine_outside_async_code() -> None:
    def outside_a_loop() -> None:
        WorkflowEngine(backend=NoopExecutionBackend())

    with pytest.raises(RuntimeError) as info:
        await asyncio.to_thread(outside_a_loop)
    message = str(info.value)
    assert "must be created within an async context" in message  # what is wrong
    assert "await WorkflowEngine.create(" in message  # the fix, async code
    assert "asyncflow_graph.compute(" in message  # the fix, plain scripts


# 2 ---------------------------------------------------------------------------------------


async def test_02_compute_inside_a_running_loop() -> None:
    @ag.function_task
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(RuntimeError) as info:
        ag.compute(double(21))
    message = str(info.value)
    assert "compute() was called inside a running event loop" in message
    assert "await WorkflowEngine.create(" in message and "`await` the handles" in message


def test_02_compute_outside_a_loop_still_works() -> None:
    # compute()'s engine keeps its work directory in the cwd: each test runs in its
    # own tmp_path (tests/conftest.py)

    @ag.function_task
    def double(x: int) -> int:
        return 2 * x

    assert ag.compute(double(21)) == (42,)


# 3 ---------------------------------------------------------------------------------------


async def test_03_two_backends_left_with_the_default_name() -> None:
    with pytest.raises(ConfigurationError) as info:
        await WorkflowEngine.create(backend=[LocalExecutionBackend(), NoopExecutionBackend()])
    message = str(info.value)
    assert "must be unique" in message and "'default' is used more than once" in message
    assert "give each backend its own name=" in message
    assert "LocalExecutionBackend(name='cpu')" in message


# 4 ---------------------------------------------------------------------------------------


async def test_04_backend_object_instead_of_its_name(flow: WorkflowEngine) -> None:
    gpu = LocalExecutionBackend(name="gpu")
    with pytest.raises(ConfigurationError) as info:
        flow.function_task(backend=gpu)
    message = str(info.value)
    assert "backend= must be a backend name (str)" in message  # what and the fix
    assert "name='gpu'" in message  # shows the object, whose name is the one to use
    assert isinstance(info.value, ValueError)


# 5 ---------------------------------------------------------------------------------------


async def test_05_backend_name_not_registered(flow: WorkflowEngine) -> None:
    @flow.function_task(backend="gpus")
    def train() -> str:
        return "model"

    with pytest.raises(BackendNotFoundError) as info:
        await train()
    message = str(info.value)
    assert "no backend named 'gpus'" in message
    assert "registered: 'compute', 'ai'" in message
    assert "pass a backend with name='gpus' to WorkflowEngine.create(backend=[...])" in message
    assert "fix the task's backend= option" in message
    # str() is the plain message, not KeyError's quoted repr
    assert not message.startswith(('"', "'"))


# 6 ---------------------------------------------------------------------------------------


async def test_06_prompt_task_on_a_compute_backend(flow: WorkflowEngine) -> None:
    @flow.prompt_task  # goes to the default backend, "compute"
    async def ask(question: str) -> str:
        return question

    @flow.function_task
    def use(answer: str) -> str:
        return answer

    asked = ask("why?")
    used = use(asked)
    with pytest.raises(PromptNotSupportedError) as info:
        await asked
    message = str(info.value)
    assert "prompt task 'ask' was routed to backend 'compute'" in message
    assert "cannot serve prompts" in message
    assert "@flow.prompt_task(backend='ai')" in message
    assert isinstance(info.value, NotImplementedError)
    with pytest.raises(DependencyFailureError, match="root cause: PromptNotSupportedError"):
        await used

    @flow.prompt_task(backend="ai")
    async def ask_ai(question: str) -> str:
        return question

    assert await ask_ai("why?") == "Dummy Prompt Output"


# 7 ---------------------------------------------------------------------------------------


async def test_07_misspelt_option_lists_the_valid_ones(flow: WorkflowEngine) -> None:
    with pytest.raises(UnknownOptionError) as info:
        flow.function_task(retires=3)
    message = str(info.value)
    assert "unknown option 'retires' for @function_task" in message
    assert "(did you mean 'retries'?)" in message
    valid = message.partition("valid options: ")[2].split(", ")
    assert {"backend", "retries", "retry_delay", "timeout", "pure"} <= set(valid)


# 8 ---------------------------------------------------------------------------------------


async def test_08_executable_builder_returns_nothing(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def greet(name: str) -> None:
        print(f"echo hello {name}")  # the mistake: printed, not returned

    with pytest.raises(TaskBuildError) as info:
        await greet("world")
    message = str(info.value)
    assert "executable task 'greet'" in message  # which task
    assert "must return a non-empty command string or a non-empty list of str" in message
    assert message.endswith("got None")  # what it returned
    assert isinstance(info.value, ValueError)


# 9 ---------------------------------------------------------------------------------------


async def test_09_input_file_nobody_produces(flow: WorkflowEngine) -> None:
    # relative file names resolve in the cwd: this test's tmp_path (tests/conftest.py)
    @flow.function_task
    def produce(out: OutputFile) -> str:
        Path(out).write_text("1,2,3")
        return out.filename

    @flow.function_task
    def read(data: InputFile, *after: str) -> str:
        return Path(data).read_text()

    made = produce(OutputFile("data.csv"))
    wrong = read(InputFile("data.csv"))
    fixed = read(InputFile("data.csv"), made)
    with pytest.raises(MissingInputError) as info:
        await wrong
    message = str(info.value)
    assert "task 'read' reads InputFile('data.csv')" in message
    assert "task 'produce' declares it as its OutputFile" in message
    assert "is not an OutputFile of any task 'read' depends on" in message
    assert "pass the producing task's handle as an argument" in message
    assert await fixed == "1,2,3"


# 10 --------------------------------------------------------------------------------------


async def test_10_tasks_after_shutdown(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(
        backend=LocalExecutionBackend(), uid="session-1", work_dir=tmp_path
    )

    @flow.function_task
    def step() -> str:
        return "done"

    await flow.shutdown()
    with pytest.raises(EngineClosedError) as info:
        step()
    message = str(info.value)
    assert "engine session-1 has been shut down" in message
    assert "create a new WorkflowEngine to run 'step'" in message
    assert isinstance(info.value, RuntimeError)


# -----------------------------------------------------------------------------------------


def test_every_error_shares_the_root_class() -> None:
    for exc in (
        BackendNotFoundError("x", []),
        ConfigurationError("x"),
        EngineClosedError("x"),
        MissingInputError("x"),
        PromptNotSupportedError("x"),
        TaskBuildError("x"),
        UnknownOptionError("x"),
        DependencyFailureError("x"),
    ):
        assert isinstance(exc, AsyncFlowGraphError)

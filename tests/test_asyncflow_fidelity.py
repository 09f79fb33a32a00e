"""AsyncFlow fidelity (issue 18, items 4, 5, 8, 9): AsyncFlow's module paths,
``init_default_logger`` on the root logger, ``flow.components``, ``InputFile`` of a
file that is not here, ``task_callbacks``."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncflow_graph
from asyncflow_graph import InputFile, LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import CommandFailedError, MissingInputError

# -- module paths (item 9) -------------------------------------------------------------------

ASYNCFLOW_NAMES = {
    "workflow_manager": ["WorkflowEngine", "TASK", "BLOCK", "FUNCTION", "EXECUTABLE", "PROMPT"],
    "backends": ["LocalExecutionBackend", "NoopExecutionBackend", "StateMapper"],
    "data": ["InputFile", "OutputFile", "File", "URL_SCHEMES"],
    "errors": ["DependencyFailureError"],
    "logging": ["init_default_logger", "get_logger", "get_structured_logger"],
    "utils": ["get_next_uid", "reset_uid_counter", "get_event_loop_or_raise"],
}


@pytest.mark.parametrize("module", sorted(ASYNCFLOW_NAMES))
def test_asyncflow_module_paths(module: str) -> None:
    mod = importlib.import_module(f"asyncflow_graph.{module}")
    for name in ASYNCFLOW_NAMES[module]:
        assert hasattr(mod, name), f"asyncflow_graph.{module} lacks {name}"
    assert getattr(asyncflow_graph, module) is mod  # `patch("asyncflow_graph.x.y")` works


def test_workflow_manager_names() -> None:
    from asyncflow_graph import workflow_manager as wm

    assert wm.WorkflowEngine is WorkflowEngine
    assert (wm.TASK, wm.BLOCK, wm.FUNCTION, wm.EXECUTABLE, wm.PROMPT) == (
        "task",
        "block",
        "function",
        "executable",
        "prompt",
    )


def test_utils_counter() -> None:
    from asyncflow_graph import utils

    utils.reset_uid_counter()
    assert [utils.get_next_uid() for _ in range(2)] == ["000001", "000002"]
    utils.reset_uid_counter()
    assert utils.get_next_uid() == "000001"
    with pytest.raises(RuntimeError, match="async context"):
        utils.get_event_loop_or_raise("WorkflowEngine")


# -- init_default_logger (item 5) -------------------------------------------------------------


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_init_default_logger_configures_the_root_logger(
    clean_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from asyncflow_graph.logging import init_default_logger

    logger = init_default_logger(logging.INFO, output_file=tmp_path / "run.log")
    assert logger is logging.getLogger()
    assert logger.level == logging.NOTSET  # the handlers filter
    logging.getLogger("__main__").info("from the program")
    logging.getLogger("myapp.stage").warning("careful")
    logging.getLogger("__main__").debug("not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("captured", UserWarning, stacklevel=1)
    out = capsys.readouterr().out
    assert " │ INFO │ [main] │ from the program" in out
    assert " │ WARNING │ [stage] │ careful" in out
    assert "not shown" not in out
    assert "captured" in out
    assert "\033[" not in out  # not a terminal: no colour codes
    assert "[main] │ from the program" in (tmp_path / "run.log").read_text()


def test_structured_logging(clean_logging: None, tmp_path: Path) -> None:
    from asyncflow_graph.logging import get_structured_logger

    path = tmp_path / "log.json"
    name = "asyncflow_graph.test.structured"
    logging.getLogger(name).handlers.clear()
    import asyncflow_graph.logging as afl

    afl.init_default_logger(logging.INFO, logger_name=name, structured_logging=True,
                            structured_file=path)  # fmt: skip
    get_structured_logger(name).info("stage done", stage="load", rows=3)
    for h in logging.getLogger(name).handlers:
        h.flush()
    record = json.loads(path.read_text().splitlines()[-1])
    assert record["message"] == "stage done" and record["stage"] == "load" and record["rows"] == 3
    for h in list(logging.getLogger(name).handlers):
        logging.getLogger(name).removeHandler(h)
        h.close()


# -- flow.components (item 8) -----------------------------------------------------------------


async def test_components_shape_read_only_and_built_on_demand() -> None:
    flow = await WorkflowEngine.create(dry_run=True)

    @flow.executable_task
    async def greet(name: str) -> str:
        return f"echo hello {name}"

    @flow.block
    async def group() -> str:
        return await greet("block")

    t = greet("x")
    b = group()
    await asyncio.gather(t, b)
    comps = flow.components
    # The inner greet("block") handle is gone: nobody held it once the block
    # returned, and the engine holds handles weakly (flat memory in long runs).
    assert set(comps) == {t.key, b.key}
    assert comps[t.key]["type"] == "task" and comps[b.key]["type"] == "block"
    assert comps[t.key]["future"] is t
    desc = comps[t.key]["description"]
    assert desc["uid"] == t.key and desc["name"] == "greet"
    assert desc["executable"] == "echo" and desc["arguments"] == ["hello", "x"]
    assert comps[t.key]["description"] is not desc  # built when read, not stored
    with pytest.raises(TypeError):
        comps[t.key] = {}  # type: ignore[index]
    await flow.shutdown()


async def test_components_keep_nothing_alive() -> None:
    flow = await WorkflowEngine.create(dry_run=True)

    @flow.function_task
    async def work() -> int:
        return 1

    await work()
    comps = flow.components
    # The view refers to the executor's own table and to nothing else: it adds no
    # reference to any handle, which lives exactly as long as the engine keeps it.
    (view,) = [r for r in gc.get_referents(comps) if not isinstance(r, type)]
    held = [r for r in gc.get_referents(view) if not isinstance(r, type)]
    assert held == [flow._executor.handles]  # the run's own tables, nothing else
    await flow.shutdown()


# -- InputFile of a file that is not here (item 4) --------------------------------------------


async def test_input_file_that_does_not_exist_is_not_a_compile_error(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=tmp_path)

    @flow.function_task
    async def stage(f: InputFile) -> str:
        return f"would stage {f.filename} from {f.filepath}"

    @flow.executable_task
    async def read(f: InputFile) -> str:
        return f"cat {f.filepath}"

    remote = InputFile("staged/by/backend.dat")
    assert remote.produced_by_task
    assert await stage(remote) == "would stage backend.dat from staged/by/backend.dat"
    with pytest.raises(CommandFailedError, match="backend.dat") as info:
        await read(remote)
    assert not isinstance(info.value, MissingInputError)
    assert "No such file" in info.value.stderr
    await flow.shutdown()


# -- task_callbacks ---------------------------------------------------------------------------


async def test_task_callbacks_reports_like_a_backend() -> None:
    class Silent(NoopExecutionBackend):
        """Accepts work and never reports: the test does, through task_callbacks."""

        def __init__(self) -> None:
            super().__init__()
            self.keys: list[str] = []
            self.both = asyncio.Event()

        def submit(self, works):  # type: ignore[no-untyped-def]
            self.keys.extend(w.key for w in works)
            if len(self.keys) == 2:
                self.both.set()

    backend = Silent()
    flow = await WorkflowEngine.create(backend=backend)

    @flow.executable_task
    async def cmd() -> str:
        return "echo hi"

    @flow.function_task
    async def fn() -> int:
        return 1

    c, f = cmd(), fn()
    await backend.both.wait()
    flow.task_callbacks(c.task, "RUNNING")
    assert c.state == "RUNNING"
    flow.task_callbacks({**c.task, "stdout": "hi\n"}, "DONE")
    flow.task_callbacks({**f.task, "exception": ValueError("no")}, "FAILED")
    assert await c == "hi\n"
    with pytest.raises(ValueError, match="no"):
        await f
    with pytest.raises(TypeError, match="state must be a str"):
        flow.task_callbacks(c.task, 3)  # type: ignore[arg-type]
    await flow.shutdown()

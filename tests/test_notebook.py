"""examples/notebook.ipynb, executed in a real IPython kernel (nbclient + ipykernel).

Top-level ``await`` creates an engine and runs tasks; handles, the plan, the progress bar
and the graph display inline through their rich reprs. The notebook is kept in git without
outputs: this test is what runs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


def test_the_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code), (
        "clear the notebook's outputs before committing (the test executes it)"
    )


def _outputs(cell: Any) -> dict[str, str]:
    """mime type -> content of everything a cell showed (streams as text/plain)."""
    found: dict[str, str] = {}
    for out in cell.outputs:
        if out.output_type == "stream":
            found["stream"] = found.get("stream", "") + out.text
        for mime, data in out.get("data", {}).items():
            found[mime] = found.get(mime, "") + str(data)
    return found


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cwd = tmp_path_factory.mktemp("notebook")
    # The kernel is a child process: it must import this checkout.
    env_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path
    try:
        client = nbclient.NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()  # raises CellExecutionError (with the traceback) if a cell fails
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    return [_outputs(c) for c in nb.cells if c.cell_type == "code"]


def _shown(executed: list[dict[str, str]], mime: str) -> str:
    return "\n".join(out.get(mime, "") for out in executed)


def test_handles_show_their_state_and_value(executed: list[dict[str, str]]) -> None:
    html = _shown(executed, "text/html")
    assert "<b>total</b> <code>task.000005</code> PENDING" in html
    assert "<b>total</b> <code>task.000005</code> DONE = 14" in html


def test_the_plan_shows_its_explanation(executed: list[dict[str, str]]) -> None:
    assert "Plan: 5 tasks in 5 submissions, 1 partitions" in _shown(executed, "text/plain")


def test_the_progress_bar_is_a_display_not_terminal_output(
    executed: list[dict[str, str]],
) -> None:
    assert '<progress value="5" max="5"></progress> 5/5' in _shown(executed, "text/html")
    assert "[asyncflow_graph] 5/5 (default 5/5)" in _shown(executed, "text/plain")
    # no rich escape codes or summary line on the cell's stderr
    assert "[asyncflow_graph]" not in _shown(executed, "stream")


def test_graphs_are_drawn_inline_as_svg(executed: list[dict[str, str]]) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed: drawings show their DOT source instead")
    svg = _shown(executed, "image/svg+xml")
    assert "<svg" in svg and "square" in svg
    assert "<svg" in _shown(executed, "text/html"), "the plan is not drawn under its explanation"

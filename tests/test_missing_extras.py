"""A missing optional dependency names the extra that installs it (each case in a
child process where the package cannot be imported)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from procs import run_python

CASES = {
    "httpx": (
        "from asyncflow_graph.backends import OpenAIInferenceBackend",
        "OpenAIInferenceBackend needs the 'httpx' package",
        "asyncflow-graph[ai]",
    ),
    "matplotlib": (
        "from asyncflow_graph.telemetry import plot_timeline; plot_timeline([], 'x.png')",
        "plot_timeline() needs the 'matplotlib' package",
        "asyncflow-graph[telemetry]",
    ),
    "xllamacpp": (
        "from asyncflow_graph.llm_server import start_local_llm_server; start_local_llm_server()",
        "the embedded LLM server needs the 'xllamacpp' package",
        "asyncflow-graph[llm]",
    ),
    "opentelemetry": (
        "import asyncio\n"
        "from asyncflow_graph import WorkflowEngine, NoopExecutionBackend\n"
        "async def main():\n"
        "    flow = await WorkflowEngine.create(backend=NoopExecutionBackend())\n"
        "    try:\n"
        "        await flow.start_telemetry()\n"
        "    finally:\n"
        "        await flow.shutdown()\n"
        "asyncio.run(main())",
        "start_telemetry() needs the 'opentelemetry-sdk' package",
        "asyncflow-graph[telemetry]",
    ),
    "distributed": (
        "import asyncio\n"
        "from asyncflow_graph import WorkflowEngine\n"
        "from asyncflow_graph.backends import DaskExecutionBackend\n"
        "asyncio.run(WorkflowEngine.create(backend=DaskExecutionBackend()))",
        "DaskExecutionBackend needs the 'distributed' package",
        "asyncflow-graph[dask]",
    ),
}


def test_missing_rich_names_its_extra_and_the_bar_falls_back(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\nsys.modules['rich'] = None\n"
        "from asyncflow_graph.telemetry.progress import ProgressBar\n"
        "bar = ProgressBar(live=True)\nbar.start()\nbar.close()\nprint('ok')\n"
    )
    proc = run_python([str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "needs the 'rich' package" in proc.stderr
    assert "asyncflow-graph[telemetry]" in proc.stderr


@pytest.mark.parametrize("package", sorted(CASES))
def test_missing_package_names_its_extra(package: str, tmp_path: Path) -> None:
    code, message, extra = CASES[package]
    script = tmp_path / "probe.py"
    # None in sys.modules makes every import of the package fail as if not installed.
    script.write_text(f"import sys\nsys.modules[{package!r}] = None\n" + textwrap.dedent(code))
    proc = run_python([str(script)], tmp_path)
    assert proc.returncode != 0
    assert "MissingDependencyError" in proc.stderr, proc.stderr[-2000:]
    assert message in proc.stderr and extra in proc.stderr, proc.stderr[-2000:]

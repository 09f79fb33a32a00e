"""Run every script in examples/ in a subprocess and check what it prints.

Each example is a real AsyncFlow 0.6 program whose import lines point at asyncflow_graph.
Scripts whose name starts with ``_`` are helpers and are not run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from procs import run_python

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if not p.name.startswith("_"))


def run_example(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_python([str(path)], cwd)


def lines_of(stdout: str) -> list[str]:
    return [line.rstrip() for line in stdout.splitlines() if line.strip()]


def value_of(lines: list[str], prefix: str) -> str:
    matches = [line[len(prefix) :].strip() for line in lines if line.startswith(prefix)]
    assert len(matches) == 1, f"expected exactly one line starting with {prefix!r}: {lines}"
    return matches[0]


def check_document_pipelines(lines: list[str], cwd: Path) -> None:
    assert value_of(lines, "default backend:") == "compute"
    results = [line for line in lines if line.startswith("result: ")]
    # asyncio.gather keeps the order of the pipelines.
    assert results == [f"result: doc-{i}:Dummy Prompt Output" for i in range(5)]
    assert value_of(lines, "pipelines:") == "5"


def check_composite_blocks(lines: list[str], cwd: Path) -> None:
    solo = [line for line in lines if line.startswith("block solo: ")]
    assert solo == [f"block solo: t3(t1[solo.{i}],t2[solo.{i}])" for i in range(3)]
    for i in range(3):
        assert value_of(lines, f"block b{i}:") == (f"3 workflows, last=t3(t1[b{i}.2],t2[b{i}.2])")
    assert value_of(lines, "concurrent blocks:") == "3"

    match = re.fullmatch(
        r"([\d.]+)s \(sequential estimate ([\d.]+)s\)", value_of(lines, "elapsed:")
    )
    assert match, lines
    elapsed, sequential = float(match.group(1)), float(match.group(2))
    assert sequential == pytest.approx(1.8)
    # Three blocks of three two-wave workflows run side by side: ideally 0.6 s.
    assert elapsed < sequential, f"blocks did not overlap: {elapsed}s >= {sequential}s"

    assert value_of(lines, "result C:") == "C:t3(t1[C],t2[C])"
    order = [step.strip() for step in value_of(lines, "order:").split(",")]
    assert sorted(order) == sorted(["start A", "end A", "start B", "end B", "start C", "end C"]), (
        order
    )
    start_c = order.index("start C")
    assert order.index("end A") < start_c
    assert order.index("end B") < start_c
    assert order.index("start A") < order.index("end A")
    assert order.index("start B") < order.index("end B")
    assert order[-1] == "end C"


def check_concurrent_workflows(lines: list[str], cwd: Path) -> None:
    for i in range(5):
        assert value_of(lines, f"workflow {i}:") == str(i * 110)
    assert value_of(lines, "results:") == "[0, 110, 220, 330, 440]"
    assert value_of(lines, "total:") == "1100"
    assert re.fullmatch(r"[\d.]+s", value_of(lines, "elapsed:"))


def check_workflow_scope(lines: list[str], cwd: Path) -> None:
    assert value_of(lines, "scope:") == "experiment-42"
    for label in ("load", "train", "evaluate"):
        assert value_of(lines, f"{label} workflow_id:") == "experiment-42"
    assert value_of(lines, "override workflow_id:") == "side-study"
    assert value_of(lines, "outside workflow_id:") == "None"
    assert value_of(lines, "auto scope matches:") == "True"
    assert value_of(lines, "auto scope prefix:") == "wf"
    assert value_of(lines, "result:") == "score(model(data:mnist))"
    assert value_of(lines, "side result:") == "score(model(data:mnist))"


def check_failure_handling(lines: list[str], cwd: Path) -> None:
    assert value_of(lines, "fetch result:") == "21"
    assert value_of(lines, "task failed:") == "ValueError: sensor offline"
    assert value_of(lines, "failed state:") == "FAILED"
    assert value_of(lines, "dependent error:") == "DependencyFailureError"
    assert value_of(lines, "failed_dependencies:") == "['explode']"
    assert value_of(lines, "root_cause:") == "ValueError: sensor offline"
    assert value_of(lines, "cause is root_cause:") == "True"
    assert value_of(lines, "descendant failed_dependencies:") == "['combine']"
    assert value_of(lines, "descendant root_cause:") == "DependencyFailureError"
    assert value_of(lines, "dependents executed:") == "[]"


def check_demo(lines: list[str], cwd: Path) -> None:
    # The plan comes before the results, twice; the first run computes all ten tasks
    # (three of them by the real LLM), the second is served from the cache.
    plans = [i for i, line in enumerate(lines) if line.startswith("Plan: 10 tasks")]
    results = [i for i, line in enumerate(lines) if line == "result: 3 documents, 61 words"]
    assert len(plans) == len(results) == 2 and plans[0] < results[0] < plans[1] < results[1]
    assert any("backend='dask'" in line for line in lines[: results[0]])
    assert any("backend='@cache'" in line for line in lines[results[0] :])
    first = [line for line in lines[: plans[1]] if line.startswith("summary ")]
    second = [line for line in lines[plans[1] :] if line.startswith("summary ")]
    assert len(first) == 3 and first == second  # the same answers, from the cache
    assert all(len(line.split(": ", 1)[1]) > 10 for line in first), first
    runs = [line for line in lines if re.match(r"run \d: ", line)]
    assert re.fullmatch(r"run 1: [\d.]+ s, cache hits 0, tasks run and stored 10", runs[0])
    assert re.fullmatch(r"run 2: [\d.]+ s, cache hits 10, tasks run and stored 0", runs[1])
    # Without Graphviz the graph is written as its DOT source (visualize() warns).
    graph = "demo_graph.svg" if shutil.which("dot") else "demo_graph.dot"
    assert value_of(lines, "drew") == f"out/{graph}"
    for name in (graph, "demo_timeline.png", "demo_events.1.jsonl"):
        assert (cwd / "out" / name).stat().st_size > 0, name


def check_script_compute(lines: list[str], cwd: Path) -> None:
    assert value_of(lines, "result:") == "total=20540"
    assert any("fused x2: load -> square_sum" in line for line in lines)
    if shutil.which("dot") is None:  # the example still runs: it writes the DOT source
        assert value_of(lines, "drew") == "out/graph.dot"
        pytest.skip("drawing graph.svg needs Graphviz's dot (apt-get install graphviz)")
    assert value_of(lines, "drew") == "out/graph.svg"


def check_mixed_backends(lines: list[str], cwd: Path) -> None:
    import math

    assert value_of(lines, "runs:") == "16"
    energies = []
    for i in range(16):
        trace = [math.exp(-0.1 * (j + 1) * i) * math.cos(0.1 * (j + 1) * i) for j in range(8)]
        energies.append(sum(x * x for x in trace))
    assert value_of(lines, "mean energy:") == f"{sum(energies) / 16:.4f}"
    assert value_of(lines, "summary:") == "Dummy Prompt Output"
    # the whole sweep went to Dask as one graph
    assert any("graph x33" in line for line in lines), lines


def check_llm_pipeline(lines: list[str], cwd: Path) -> None:
    results = [line for line in lines if line.startswith("result: ")]
    assert [r.split(":")[1].strip() for r in results] == [f"doc-{i}" for i in range(5)]
    assert all(len(r.split(":", 2)[2].strip()) > 10 for r in results), results  # real text
    assert value_of(lines, "pipelines:") == "5"
    assert re.fullmatch(r"\d+ for 5 prompts", value_of(lines, "requests:")), lines


def check_custom_backend(lines: list[str], cwd: Path) -> None:
    assert value_of(lines, "result:") == str(sum(i * i for i in range(10)))
    assert value_of(lines, "command:") == "sum of squares: 285"
    assert re.fullmatch(r"threads_[01]", value_of(lines, "ran in:")), lines  # max_workers=2
    assert value_of(lines, "failed:") == "ZeroDivisionError division by zero"


CHECKS: dict[str, Callable[[list[str], Path], None]] = {
    "custom_backend.py": check_custom_backend,
    "llm_pipeline.py": check_llm_pipeline,
    "mixed_backends.py": check_mixed_backends,
    "script_compute.py": check_script_compute,
    "demo.py": check_demo,
    "document_pipelines.py": check_document_pipelines,
    "composite_blocks.py": check_composite_blocks,
    "concurrent_workflows.py": check_concurrent_workflows,
    "workflow_scope.py": check_workflow_scope,
    "failure_handling.py": check_failure_handling,
}


def test_seed_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    missing = set(CHECKS) - names
    assert not missing, f"missing examples: {sorted(missing)}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_imports_asyncflow_graph(path: Path) -> None:
    source = path.read_text()
    assert "radical" not in source, f"{path.name} still refers to radical.asyncflow"
    imports = r"^(from asyncflow_graph(\.\w+)* import |import asyncflow_graph)"
    assert re.search(imports, source, re.MULTILINE)
    if "WorkflowEngine" not in source:
        return  # the script face: no engine, no event loop
    assert "await flow.shutdown()" in source
    assert 'if __name__ == "__main__":' in source
    assert "asyncio.run(main(" in source


@pytest.mark.timeout(150)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    proc = run_example(path, tmp_path)
    assert proc.returncode == 0, (
        f"{path.name} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    check = CHECKS.get(path.name)
    if check is not None:
        check(lines_of(proc.stdout), tmp_path)


def test_readme_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    shown = re.search(r"```text\n(.*?)```", readme, re.DOTALL).group(1)
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    result = run_example(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout) == lines_of(shown)

"""The command line, run for real in subprocesses.

* ``--help`` names the program as it was started (``asyncflow-graph`` or
  ``python -m asyncflow_graph``), for the program and every command.
* Every command the docs mention exists, and docs/cli.md shows an example of each: its
  shell blocks run in order in a scratch directory and print what the page shows.
* ``visualize``/``explain`` take a file path or a module, from any directory; bad targets
  get an error naming what is wrong.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import run_python
from test_docs import blocks_of, output_matches

from asyncflow_graph.__main__ import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_PAGE = DOCS / "cli.md"
PROG = "python -m asyncflow_graph"
#: a command line the docs mention: ``python -m asyncflow_graph X`` or ``asyncflow-graph X``
MENTION = re.compile(r"(?:python -m asyncflow_graph|asyncflow-graph)\s+(?!\[)([a-z][\w-]*)")


def commands() -> list[str]:
    sub = next(a for a in build_parser(PROG)._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return sorted(sub.choices)


def cli(*args: str, cwd: Path, path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "asyncflow_graph", *args], cwd, timeout=60, path=path)


# --------------------------------------------------------------------------- help


def test_help_names_the_module_and_every_command(tmp_path: Path) -> None:
    top = cli("--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith(f"usage: {PROG} ")
    for name in commands():
        assert name in top.stdout
        proc = cli(name, "--help", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {PROG} {name} "), proc.stdout
        assert "example: " in proc.stdout, f"{name} --help shows no example"
    for action in ("ls", "stats", "clear"):
        proc = cli("cache", action, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {PROG} cache {action}")


def test_the_installed_script_names_itself(tmp_path: Path) -> None:
    script = shutil.which("asyncflow-graph", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the asyncflow-graph script is not installed (pip install -e .)")
    proc = subprocess.run(
        [script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: asyncflow-graph ")
    assert "python -m" not in proc.stdout


def test_a_missing_command_says_which_exist(tmp_path: Path) -> None:
    proc = cli("draw", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid choice: 'draw'" in proc.stderr and "visualize" in proc.stderr


# --------------------------------------------------------------------------- the docs


def test_every_command_the_docs_mention_exists_and_is_on_the_cli_page() -> None:
    known = set(commands())
    for page in sorted(DOCS.rglob("*.md")):
        for name in MENTION.findall(page.read_text()):
            assert name in known, f"docs/{page.relative_to(DOCS)} mentions command {name!r}"
    shown = {
        m
        for block in blocks_of(CLI_PAGE)
        if block.lang == "sh"
        for line in block.lines
        for m in MENTION.findall(line)
    }
    assert known <= shown, f"docs/cli.md shows no example of {sorted(known - shown)}"


def _argv(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "asyncflow-graph":
        return ["-m", "asyncflow_graph", *words[1:]]
    assert words[0] == "python", f"docs/cli.md: run commands with python or asyncflow-graph: {line}"
    return words[1:]


def _run_block(lines: list[str], cwd: Path) -> tuple[list[str], Path]:
    printed: list[str] = []
    for line in (x.strip() for x in lines):
        if not line or line.startswith("#"):
            continue
        if line.startswith("cd "):
            cwd = cwd / line[3:].strip()
            continue
        proc = run_python(_argv(line), cwd, timeout=60)
        assert proc.returncode == 0, f"docs/cli.md: `{line}` failed:\n{proc.stderr}"
        printed += proc.stdout.splitlines()
    return printed, cwd


def test_the_cli_page_session_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    """The page's shell blocks, in order, from a copy of the repository's examples."""
    shutil.copytree(
        ROOT / "examples" / "guide",
        tmp_path / "examples" / "guide",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    blocks = list(blocks_of(CLI_PAGE))
    ran = 0
    for i, block in enumerate(blocks):
        if block.lang != "sh":
            continue
        printed, _ = _run_block(block.lines, tmp_path)
        ran += 1
        shown = blocks[i + 1] if i + 1 < len(blocks) else None
        if shown is None or shown.lang != "text" or shown.title is not None:
            continue
        if shutil.which("dot") is None and any(" visualize " in x for x in block.lines):
            continue  # without Graphviz the drawing is written as DOT source
        assert output_matches(shown.lines, printed), (
            f"docs/cli.md:{shown.line_no} does not show what the commands print now:\n"
            + "\n".join(printed)
        )
    assert ran >= 5
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 0


# --------------------------------------------------------------------------- targets


PIPELINE = """
import asyncflow_graph as ag
from helpers import double


@ag.function_task
def load() -> int:
    return 2


@ag.function_task
def twice(x: int) -> int:
    return double(x)


def build():
    return {"out": twice(load())}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``proj/flows/pipeline.py`` importing its neighbour ``helpers.py``."""
    flows = tmp_path / "proj" / "flows"
    flows.mkdir(parents=True)
    (flows / "pipeline.py").write_text(PIPELINE)
    (flows / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cwd", "target"),
    [
        ("proj/flows", "pipeline:build"),
        ("proj/flows", "pipeline.py:build"),
        (".", "proj/flows/pipeline.py:build"),
        ("proj", "flows/pipeline.py:build"),
        ("elsewhere", "../proj/flows/pipeline.py:build"),
    ],
)
def test_explain_takes_a_file_or_a_module_from_any_directory(
    project: Path, cwd: str, target: str
) -> None:
    (project / cwd).mkdir(exist_ok=True)
    proc = cli("explain", target, cwd=project / cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Plan: 2 tasks in 1 submissions, 1 partitions")
    assert "fused x2: load -> twice" in proc.stdout


def test_visualize_an_absolute_path_draws_where_asked(project: Path) -> None:
    target = f"{project / 'proj' / 'flows' / 'pipeline.py'}:build"
    out = project / "out"
    out.mkdir()
    proc = cli("visualize", target, "-o", "graph.dot", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wrote graph.dot"
    dot = (out / "graph.dot").read_text()
    assert "load" in dot and "twice" in dot
    assert not list(out.glob("asyncflow.session.*")), "the lazy engine left a session directory"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("pipeline", "expected path/to/pipeline.py:function or module:function"),
        ("missing.py:build", "no such file: missing.py"),
        ("missing_module:build", "cannot import 'missing_module'"),
        ("pipeline.py:nope", "has no function 'nope' (functions: build)"),
        ("pipeline:nope", "has no function 'nope' (functions: build)"),
    ],
)
def test_a_bad_target_names_what_is_wrong(project: Path, target: str, message: str) -> None:
    proc = cli("explain", target, cwd=project / "proj" / "flows")
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_timeline_of_a_missing_log_says_how_to_write_one(tmp_path: Path) -> None:
    proc = cli("timeline", "run.jsonl", cwd=tmp_path)
    assert proc.returncode == 1
    assert "no such event log: run.jsonl" in proc.stderr and "record_events" in proc.stderr

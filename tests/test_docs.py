"""The documentation is tested.

* Every ``examples/guide/*.py`` runs standalone (in a temporary directory) and exits 0.
* Every Python block on every page under ``docs/`` is an include of such a file
  (``--8<-- "examples/guide/NAME.py"``), of another example under ``examples/`` or of a
  test module (``tests/test_NAME.py``): no untested snippet.
* A ``text`` block titled "Output" shows what the page's latest include prints; a
  ``mermaid`` block shows part of it. A line ``...`` in the shown output stands for any
  number of lines, and ``...`` inside a line for any text.
* The pictures under ``docs/img`` match what the code draws now.
* ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import run_python

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDE = ROOT / "examples" / "guide"
PAGES = sorted(DOCS.rglob("*.md"))
EXAMPLES = sorted(GUIDE.glob("*.py"))
PYTHON_LANGS = {"python", "py", "python3", "pycon"}
#: an example (run by this module or tests/test_examples.py) or a test module (run by pytest)
INCLUDE = re.compile(r'^--8<-- "((?:examples/(?:guide/|dask_hpc/)?|tests/test_)[\w.-]+\.py)"$')
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)(?P<attrs>.*)$"
)


def page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


# --------------------------------------------------------------------------- page parsing


@dataclass
class Block:
    lang: str
    attrs: str
    lines: list[str]
    line_no: int  # 1-based line of the opening fence

    @property
    def title(self) -> str | None:
        match = re.search(r'title="([^"]*)"', self.attrs)
        return match.group(1) if match else None

    def include(self) -> str | None:
        body = [line.strip() for line in self.lines if line.strip()]
        if len(body) == 1:
            match = INCLUDE.match(body[0])
            if match:
                return match.group(1)
        return None


def blocks_of(page: Path) -> Iterator[Block]:
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match.group("indent"), match.group("fence")
        close = re.compile(rf"^{re.escape(indent)}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        assert j < len(lines), f"{page_id(page)}:{i + 1}: unclosed code block"
        yield Block(match.group("lang").lower(), match.group("attrs"), body, i + 1)
        i = j + 1


@dataclass
class Expectation:
    page: str
    line_no: int
    example: str  # examples/guide/NAME.py
    kind: str  # "output" or "mermaid"
    lines: list[str]


def expectations(page: Path) -> Iterator[Expectation]:
    last_include: str | None = None
    for block in blocks_of(page):
        if block.lang in PYTHON_LANGS:
            last_include = block.include()
        elif (block.lang == "text" and block.title == "Output") or block.lang == "mermaid":
            assert last_include is not None and last_include.startswith("examples/"), (
                f"{page_id(page)}:{block.line_no}: a {block.lang} output block must follow "
                f"a python block that includes an example"
            )
            kind = "mermaid" if block.lang == "mermaid" else "output"
            yield Expectation(page_id(page), block.line_no, last_include, kind, block.lines)


def included_examples() -> set[str]:
    found = set()
    for page in PAGES:
        for block in blocks_of(page):
            if block.lang in PYTHON_LANGS and block.include():
                found.add(block.include())
    return found


ALL_EXPECTATIONS = [e for page in PAGES for e in expectations(page)]


# --------------------------------------------------------------------------- running examples


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path


_RUN_DIR = Path(tempfile.mkdtemp(prefix="asyncflow-docs-"))


@pytest.fixture(scope="module", autouse=True)
def _cleanup_runs() -> Iterator[None]:
    yield
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


#: seconds an example may take: most take 1-5 s, the Dask ones start a cluster; the bound
#: holds on a 2-core machine that other jobs load (30 s did not)
EXAMPLE_BOUND = 120
pytestmark = pytest.mark.timeout(EXAMPLE_BOUND + 30)  # pytest's own bound stays above it


@functools.cache
def run(example: str) -> Run:
    """Run ``examples/guide/NAME.py`` once per session, in its own temporary directory."""
    path = ROOT / example
    cwd = _RUN_DIR / path.stem
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        proc = run_python([str(path)], cwd, timeout=EXAMPLE_BOUND)
    except subprocess.TimeoutExpired as exc:
        why = f"timed out after {EXAMPLE_BOUND} s\n{exc.stderr or ''}"
        return Run(-1, str(exc.stdout or ""), why, cwd)
    return Run(proc.returncode, proc.stdout, proc.stderr, cwd)


def finished(example: str) -> Run:
    result = run(example)
    assert result.returncode == 0, (
        f"{example} exited with {result.returncode}\n--- stdout ---\n{result.stdout}"
        f"\n--- stderr ---\n{result.stderr}"
    )
    return result


# --------------------------------------------------------------------------- matching


def _line_matches(expected: str, actual: str) -> bool:
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def _segment_at(segment: list[str], actual: list[str], start: int) -> bool:
    window = actual[start : start + len(segment)]
    return len(window) == len(segment) and all(
        _line_matches(e, a) for e, a in zip(segment, window, strict=True)
    )


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Do the shown lines appear in the actual output, in order and contiguously, where a
    line ``...`` stands for any number of lines (blank lines are ignored on both sides)?"""
    segments: list[list[str]] = [[]]
    for line in (x.rstrip() for x in expected if x.strip()):
        if line.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(line)
    actual = [x.rstrip() for x in actual if x.strip()]
    pos = 0
    for segment in segments:
        if not segment:
            continue
        found = next(
            (
                s
                for s in range(pos, len(actual) - len(segment) + 1)
                if _segment_at(segment, actual, s)
            ),
            None,
        )
        if found is None:
            return False
        pos = found + len(segment)
    return True


def test_output_matching_rules() -> None:
    assert output_matches(["a", "b"], ["x", "a", "b", "y"])
    assert not output_matches(["a", "b"], ["a", "x", "b"])
    assert output_matches(["a", "...", "b"], ["a", "x", "y", "b"])
    assert output_matches(["valid: x, y..."], ["valid: x, y, z"])
    assert not output_matches(["b", "a"], ["a", "b"])
    assert not output_matches(["a"], [])


# --------------------------------------------------------------------------- tests


def test_there_are_pages_and_examples() -> None:
    assert len(PAGES) >= 10 and len(EXAMPLES) >= 10
    assert ALL_EXPECTATIONS


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_are_included_examples(page: Path) -> None:
    for block in blocks_of(page):
        if block.lang not in PYTHON_LANGS:
            continue
        included = block.include()
        assert included is not None, (
            f"{page_id(page)}:{block.line_no}: a python block must be exactly one line "
            f'--8<-- "examples/guide/NAME.py" (put the code in a tested example file)'
        )
        assert (ROOT / included).is_file(), f"{page_id(page)}:{block.line_no}: no {included}"
        assert block.title == included, (
            f'{page_id(page)}:{block.line_no}: give the block title="{included}"'
        )


def test_every_example_is_on_a_page() -> None:
    orphans = {f"examples/guide/{p.name}" for p in EXAMPLES} - included_examples()
    assert not orphans, f"examples not shown on any page: {sorted(orphans)}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path: Path) -> None:
    finished(f"examples/guide/{path.name}")


@pytest.mark.parametrize("expectation", ALL_EXPECTATIONS, ids=lambda e: f"{e.page}:{e.line_no}")
def test_page_shows_the_output(expectation: Expectation) -> None:
    result = finished(expectation.example)
    if shutil.which("dot") is None and ".visualize(" in (ROOT / expectation.example).read_text():
        pytest.skip("Graphviz's dot is not installed: drawings are written as .dot files")
    if not output_matches(expectation.lines, result.stdout.splitlines()):
        pytest.fail(
            f"{expectation.page}:{expectation.line_no}: the {expectation.kind} block does not "
            f"match what {expectation.example} prints now; update the page.\n"
            f"--- page shows ---\n" + "\n".join(expectation.lines) + "\n"
            f"--- the example prints ---\n{result.stdout}",
            pytrace=False,
        )


def test_cli_command_on_the_compiler_page(tmp_path: Path) -> None:
    command = "python -m asyncflow_graph visualize compiler_cli:build -o graph.svg"
    assert command in (DOCS / "compiler.md").read_text()
    proc = run_python(command.split()[1:], tmp_path, timeout=30, path=[GUIDE])
    assert proc.returncode == 0, proc.stderr
    if shutil.which("dot") is not None:
        assert proc.stdout.strip() == "wrote graph.svg"
        assert (tmp_path / "graph.svg").read_text().lstrip().startswith("<?xml")


def svg_titles(svg: str) -> list[str]:
    """Node and edge ids of a Graphviz SVG (stable across renders, unlike coordinates)."""
    return sorted(re.findall(r"<title>([^<]*)</title>", svg))


@pytest.mark.parametrize(
    ("example", "drawn", "copy"),
    [
        ("first_workflow.py", "out/graph.svg", "first_workflow.svg"),
        ("compiler_visualize.py", "out/before.svg", "before_run.svg"),
        ("compiler_visualize.py", "out/after.svg", "after_run.svg"),
    ],
)
def test_pictures_match_the_examples(example: str, drawn: str, copy: str) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed: the examples cannot render SVG")
    result = finished(f"examples/guide/{example}")
    fresh = (result.cwd / drawn).read_text()
    kept = (DOCS / "img" / copy).read_text()
    assert svg_titles(fresh) == svg_titles(kept), (
        f"docs/img/{copy} is out of date: run examples/guide/{example} and copy its {drawn}"
    )


def test_benchmark_chart_is_the_current_one() -> None:
    assert (DOCS / "img" / "results.png").read_bytes() == (
        ROOT / "benchmarks" / "results.png"
    ).read_bytes(), "run: cp benchmarks/results.png docs/img/results.png"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr}\n{proc.stdout}"
    assert (tmp_path / "site" / "index.html").is_file()

"""The layers of docs/architecture.md hold: no import cycles (type-only imports
included), backends independent of the compiler and the executor, the tools use
no private name of another module, and the engine and driver stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import asyncflow_graph

PACKAGE = Path(asyncflow_graph.__file__).parent
ROOT = PACKAGE.parent


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(adj[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycle_between_any_two_modules():
    graph = grimp.build_graph("asyncflow_graph", include_external_packages=False)
    assert len(graph.modules) > 40
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
    )
    (pkg / "b.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic_pkg", include_external_packages=False)
    assert _cycles(graph) == [["cyclic_pkg.a", "cyclic_pkg.b"]]


TOOLS = [
    PACKAGE / "visualize.py",
    PACKAGE / "script.py",
    *sorted((PACKAGE / "telemetry").glob("*.py")),
]


def _private_uses(path: Path) -> list[str]:
    """Private names a module takes from other modules: imported ones, and
    attributes read off anything but ``self``/``cls``."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            names = [a.name for a in node.names]
            for name in [*parts, *names]:
                if name.startswith("_") and not name.startswith("__"):
                    out.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            if not node.attr.startswith("__") and not (
                isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            ):
                out.append(f"{node.lineno}: {ast.unparse(node)}")
    return out


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: p.name)
def test_tools_use_no_private_name_of_another_module(path):
    assert _private_uses(path) == []


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body without its signature and docstring."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] or body
    return (fn.end_lineno or fn.lineno) - body[0].lineno + 1


def test_engine_and_driver_stay_small_and_no_function_is_long():
    assert len((PACKAGE / "engine.py").read_text().splitlines()) < 350
    driver = ast.parse((PACKAGE / "executor" / "driver.py").read_text())
    (executor,) = [n for n in driver.body if isinstance(n, ast.ClassDef) and n.name == "Executor"]
    assert (executor.end_lineno or 0) - executor.lineno < 350
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _code_lines(node) > 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert long == []


def test_old_import_paths_keep_working():
    from asyncflow_graph import protocol
    from asyncflow_graph.backends import base
    from asyncflow_graph.compiler import plan

    for name in ("Backend", "BackendContext", "Command", "Remote", "Reporter", "Work"):
        assert getattr(base, name) is getattr(protocol, name)
    for name in ("Capabilities", "Unit", "ENGINE_BACKEND"):
        assert getattr(plan, name) is getattr(protocol, name)


async def test_thread_safe_reporter_delivers_in_order_on_the_loop():
    import asyncio
    import threading

    from asyncflow_graph.protocol import ThreadSafeReporter

    loop = asyncio.get_running_loop()
    seen: list[tuple[str, object, bool]] = []
    finished = asyncio.Event()

    class Recorder:
        def _log(self, what: str, value: object) -> None:
            seen.append((what, value, threading.current_thread() is threading.main_thread()))

        def running(self, key: str) -> None:
            self._log("running", key)

        def done(self, key: str, value: object) -> None:
            self._log("done", (key, value))

        def failed(self, key: str, exc: BaseException) -> None:
            self._log("failed", (key, type(exc).__name__))

        def cancelled(self, key: str, msg: str | None = None) -> None:
            self._log("cancelled", (key, msg))

        def ended(self, outcomes) -> None:
            self._log("ended", list(outcomes))
            finished.set()

    reporter = ThreadSafeReporter(Recorder(), loop)

    def worker() -> None:
        reporter.running("a")
        reporter.done("a", 1)
        reporter.failed("b", ValueError("x"))
        reporter.cancelled("c", "bye")
        reporter.ended(iter([("d", True, 4)]))  # a generator is materialized here

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    await asyncio.wait_for(finished.wait(), 5)
    assert seen == [
        ("running", "a", True),
        ("done", ("a", 1), True),
        ("failed", ("b", "ValueError"), True),
        ("cancelled", ("c", "bye"), True),
        ("ended", [("d", True, 4)], True),
    ]

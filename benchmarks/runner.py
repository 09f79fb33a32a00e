"""Orchestrate the benchmark: one fresh subprocess per run, repeats, skips, then the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.systems import SYSTEMS
from benchmarks.workloads import WORKLOADS, Workload

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
Record = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    systems: Sequence[str]
    workloads: Sequence[str]
    quick: bool
    repeat: int
    timeout_s: float
    cell_budget_s: float
    out: Path
    raw_out: Path
    #: also copy RESULTS.md and results.png over the tracked ones (benchmarks/, docs/img/)
    update_tracked: bool = False


@dataclass
class Cell:
    """All runs of one system on one workload size."""

    system: str
    workload: str
    n: int
    tasks: int
    runs: list[Record] = field(default_factory=list)
    note: str = ""

    @property
    def ok_runs(self) -> list[Record]:
        return [r for r in self.runs if r["status"] == "ok"]

    @property
    def status(self) -> str:
        if self.ok_runs:
            return "ok"
        if self.runs:
            return str(self.runs[-1]["status"])
        return "n/a" if self.note.startswith("n/a") else "skipped"

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.ok_runs)

    def span(self, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.ok_runs]
        return min(values), max(values)

    def peak_rss_mib(self) -> float | None:
        values = [r["peak_rss_mib"] for r in self.runs if "peak_rss_mib" in r]
        return max(values) if values else None


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under two minutes: smaller sizes, 1 run per cell, 20 s per run",
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. W1,W2")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated names")
    parser.add_argument("--repeat", type=int, help="runs per cell (default 5, --quick 1)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per run (default 120, --quick 20)"
    )
    parser.add_argument(
        "--cell-budget",
        type=float,
        help="stop repeating a cell once its runs would exceed this many seconds "
        "(default 40, --quick 10)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where RESULTS.md, results.json and results.png go "
        "(default benchmarks/out/<UTC timestamp>/, ignored by git)",
    )
    parser.add_argument(
        "--update-tracked",
        action="store_true",
        help="also overwrite the tracked benchmarks/RESULTS.md, benchmarks/results.png "
        "and docs/img/results.png",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir or BENCH_DIR / "out" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Settings(
        systems=_names(args.systems, SYSTEMS, parser),
        workloads=_names(args.workloads, WORKLOADS, parser),
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 5),
        timeout_s=args.timeout or (20.0 if args.quick else 120.0),
        cell_budget_s=args.cell_budget or (10.0 if args.quick else 40.0),
        out=out_dir / "RESULTS.md",
        raw_out=out_dir / "results.json",
        update_tracked=args.update_tracked,
    )


def _names(value: str, known: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        parser.error(f"unknown {unknown}; choose from {', '.join(known)}")
    return names


def run_once(system: str, workload: str, n: int, timeout_s: float) -> Record:
    """Run the worker in a fresh process (own session, so a timeout kills its whole tree)."""
    cmd = [sys.executable, "-m", "benchmarks.worker", system, workload, str(n)]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="afg-bench-") as cwd:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"status": "timeout", "reason": f"killed after {timeout_s:.0f} s"}
    record = _last_json_line(out) or {
        "status": "error",
        "reason": f"worker exited {proc.returncode}: {err.strip()[-300:]}",
    }
    record["wall_s"] = time.perf_counter() - start
    return record


def _last_json_line(text: str) -> Record | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            parsed: Record = json.loads(line)
            return parsed
    return None


def skip_reason(previous: Cell | None, cell: Cell, timeout_s: float) -> str | None:
    """Why a cell need not run: the system's task cap, or its previous (smaller) size."""
    cap = SYSTEMS[cell.system].max_tasks
    if cap is not None and cell.tasks > cap and WORKLOADS[cell.workload].kind == "run":
        return f"skipped: above this system's cap of {cap:,} tasks (exceeds the time bound)"
    if previous is None:
        return None
    if previous.status == "n/a":
        return previous.note
    if previous.status in ("timeout", "skipped"):
        return "skipped: a smaller size already hit the time bound"
    if previous.status != "ok":
        return None
    estimate = previous.median("elapsed_s") * cell.tasks / previous.tasks
    if estimate > timeout_s:
        return f"skipped: would exceed time bound (est. {estimate:.0f} s > {timeout_s:.0f} s)"
    return None


def run_cell(cell: Cell, settings: Settings) -> None:
    """Repeat a cell until ``repeat`` runs, a failure, or the cell's time budget."""
    spent = 0.0
    while len(cell.runs) < settings.repeat:
        record = run_once(cell.system, cell.workload, cell.n, settings.timeout_s)
        cell.runs.append(record)
        wall = record.get("wall_s", settings.timeout_s)
        spent += wall
        if record["status"] != "ok":
            reason = record.get("reason", "")
            cell.note = f"{record['status']} ({reason})" if reason else str(record["status"])
            return
        if spent + wall > settings.cell_budget_s and len(cell.runs) < settings.repeat:
            cell.note = f"{len(cell.runs)} run(s): cell time budget {settings.cell_budget_s:.0f} s"
            return


def cells(settings: Settings) -> Iterator[tuple[Cell, Cell | None]]:
    """Every (cell, same system's previous-size cell) in run order."""
    for workload_name in settings.workloads:
        workload: Workload = WORKLOADS[workload_name]
        sizes = workload.quick_sizes if settings.quick else workload.sizes
        previous: dict[str, Cell] = {}
        for n in sizes:
            tasks = workload.tasks(n)
            for system in settings.systems:
                cell = Cell(system, workload_name, n, tasks)
                yield cell, previous.get(system)
                previous[system] = cell


def describe(cell: Cell) -> str:
    head = f"{cell.workload} n={cell.n:<6} {cell.system:<28}"
    if cell.status != "ok":
        return f"{head} {cell.note or cell.status}"
    return f"{head} {cell.median('tasks_per_s'):>12,.0f} tasks/s  ({len(cell.ok_runs)} runs)"


def run_all(settings: Settings) -> list[Cell]:
    done: list[Cell] = []
    for cell, previous in cells(settings):
        reason = skip_reason(previous, cell, settings.timeout_s)
        if reason:
            cell.note = reason
        else:
            run_cell(cell, settings)
        print(describe(cell), file=sys.stderr, flush=True)
        done.append(cell)
    return done


def update_tracked(written: Sequence[Path]) -> list[Path]:
    """Copy this run's RESULTS.md and results.png over the tracked copies (the docs page
    shows docs/img/results.png, which tests/test_docs.py keeps equal to benchmarks/)."""
    targets = {
        "RESULTS.md": [BENCH_DIR / "RESULTS.md"],
        "results.png": [BENCH_DIR / "results.png", REPO_ROOT / "docs" / "img" / "results.png"],
    }
    copies = []
    for path in written:
        for target in targets.get(path.name, []):
            shutil.copyfile(path, target)
            copies.append(target)
    return copies


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.report import write_outputs

    settings = parse_args(argv)
    started = time.time()
    results = run_all(settings)
    written = write_outputs(results, settings, time.time() - started)
    if settings.update_tracked:
        written += update_tracked(written)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if not settings.update_tracked:
        print("the tracked benchmarks/RESULTS.md is unchanged (--update-tracked)", file=sys.stderr)
    print(f"suite wall time {time.time() - started:.0f} s", file=sys.stderr)
    return 0

"""Render benchmark cells as Markdown (RESULTS.md), raw JSON and a bar chart (results.png)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.workloads import WORKLOADS

if TYPE_CHECKING:
    from benchmarks.runner import Cell, Settings

BASELINE = "asyncflow_graph-local"
DASH = "\u2013"
COLUMNS = (
    "size",
    "tasks",
    "system",
    "tasks/s (median)",
    f"min {DASH} max",
    "elapsed s (median)",
    "setup s",
    "peak RSS MiB",
    "runs",
    f"ratio to {BASELINE}",
    "check / note",
)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.platform()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


def versions(cells: Sequence[Cell], systems: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for cell in cells:
        for run in cell.runs:
            if cell.system not in found and run.get("versions"):
                found[cell.system] = ", ".join(f"{k} {v}" for k, v in run["versions"].items())
    return {s: found.get(s, "unavailable (not run)") for s in systems}


def _ratio(cell: Cell, cells: Sequence[Cell]) -> str:
    base = next(
        (c for c in cells if (c.system, c.workload, c.n) == (BASELINE, cell.workload, cell.n)),
        None,
    )
    if cell.status != "ok" or base is None or base.status != "ok":
        return DASH
    return f"{cell.median('tasks_per_s') / base.median('tasks_per_s'):.3g}x"


def _note(cell: Cell) -> str:
    checks = {str(r.get("check")) for r in cell.ok_runs}
    parts = [] if checks <= {"skipped"} else [", ".join(sorted(checks - {"skipped"}))]
    return "; ".join([*parts, cell.note] if cell.note else parts).replace("|", "/")


def row(cell: Cell, cells: Sequence[Cell]) -> list[str]:
    size = WORKLOADS[cell.workload].size_label(cell.n)
    rss = cell.peak_rss_mib()
    common = [size, f"{cell.tasks:,}", cell.system]
    tail = [f"{rss:.0f}" if rss else DASH, str(len(cell.ok_runs)), _ratio(cell, cells), _note(cell)]
    if cell.status != "ok":
        return [*common, f"**{cell.status}**", DASH, DASH, DASH, *tail]
    low, high = cell.span("tasks_per_s")
    return [
        *common,
        f"{cell.median('tasks_per_s'):,.0f}",
        f"{low:,.0f} {DASH} {high:,.0f}",
        f"{cell.median('elapsed_s'):.3g}",
        f"{cell.median('setup_s'):.3g}",
        *tail,
    ]


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(cells: Sequence[Cell], settings: Settings, wall_s: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# asyncflow_graph benchmarks",
        "",
        f"- Date: {now} (suite wall time {wall_s / 60:.1f} min)",
        f"- Machine: {machine()}",
        f"- Mode: {'--quick' if settings.quick else 'full'}; up to {settings.repeat} runs per "
        f"cell, each in a fresh process; time bound {settings.timeout_s:.0f} s per run; "
        f"cell budget {settings.cell_budget_s:.0f} s",
        "",
        "| system | versions |",
        "|---|---|",
        *(f"| {s} | {v} |" for s, v in versions(cells, settings.systems).items()),
        "",
        "Throughput = tasks / (time from the first task creation to all results); engine creation "
        "and cluster start-up are excluded and shown as *setup*. Peak RSS is the worker "
        "process's `ru_maxrss` (Dask worker processes not included). Ratio = system tasks/s ÷ "
        f"{BASELINE} tasks/s. *check ok*: the sink values add up to the number of tasks.",
    ]
    for name in settings.workloads:
        workload = WORKLOADS[name]
        rows = [row(c, cells) for c in cells if c.workload == name]
        lines += ["", f"## {name} — {workload.title}", "", workload.description, "", *table(rows)]
    return "\n".join(lines) + "\n"


def plot(cells: Sequence[Cell], systems: Sequence[str], path: Path) -> Path | None:
    """Grouped log-scale bars of median tasks/s per workload size and system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = sorted({(c.workload, c.n) for c in cells if c.status == "ok"})
    if not groups:
        return None
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(groups)), 5))
    for i, system in enumerate(systems):
        xs, ys = [], []
        for g, (workload, n) in enumerate(groups):
            key = (system, workload, n)
            cell = next((c for c in cells if (c.system, c.workload, c.n) == key), None)
            if cell is not None and cell.status == "ok":
                xs.append(g + (i - (len(systems) - 1) / 2) * width)
                ys.append(cell.median("tasks_per_s"))
        ax.bar(xs, ys, width, label=system)
    ax.set_yscale("log")
    ax.set_ylabel("tasks/s (median, log scale)")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{w}\n{WORKLOADS[w].size_label(n)}" for w, n in groups])
    ax.legend(fontsize="small", ncols=2)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(cells: Sequence[Cell], settings: Settings, wall_s: float) -> list[Path]:
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(render_markdown(cells, settings, wall_s))
    settings.raw_out.parent.mkdir(parents=True, exist_ok=True)
    settings.raw_out.write_text(json.dumps([asdict(c) for c in cells], indent=1))
    png = plot(cells, settings.systems, settings.out.with_name("results.png"))
    return [p for p in (settings.out, settings.raw_out, png) if p is not None]

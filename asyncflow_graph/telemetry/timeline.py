"""A timeline (Gantt) plot of a run from its JSONL log, with matplotlib.

Top panel: one row per workflow (or per backend), each split into as many lanes as
it had tasks running at once (up to ``MAX_LANES``). A bar is a task running, its
colour the backend; a thin grey line before it is the time it waited in the
backend's queue; failed tasks have a red edge and a red cross at their end,
cancelled ones are hatched, blocks are outlined. Bottom panel: tasks running per
backend over time, with the backend's slots (dashed) when the log knows them, and
the mean utilisation in the legend.

Drawn on an Agg canvas without pyplot, so it never changes the caller's matplotlib
backend and works without a display.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import missing_dependency
from ..protocol import ENGINE_BACKEND, TaskState
from .eventlog import EventRecord, TaskRecord, load_tasks, read_events

__all__ = ["plot_timeline"]

MAX_LANES = 12  # per row; more concurrent tasks share lanes (bars overlap)
NO_WORKFLOW = "(no workflow)"
_PALETTE = (
    "#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860",
    "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#2F4B7C",
)  # fmt: skip


def plot_timeline(
    source: str | os.PathLike[str] | Iterable[EventRecord],
    output: str | os.PathLike[str],
    *,
    group_by: str = "workflow",
    slots: Mapping[str, int] | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw the run in ``source`` (a JSONL log path or its events) to ``output``
    (png, svg or pdf by extension). ``group_by``: "workflow" or "backend".
    ``slots`` overrides the backends' slot counts found in the log."""
    if group_by not in ("workflow", "backend"):
        raise ValueError(f"group_by must be 'workflow' or 'backend', got {group_by!r}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:
        raise missing_dependency("matplotlib", "telemetry", "plot_timeline()") from exc

    events = read_events(source) if isinstance(source, str | os.PathLike) else list(source)
    tasks = [t for t in load_tasks(events).values() if t.created is not None]
    header = next((e.data for e in events if e.event == "session"), {})
    t0 = min([e.t for e in events] or [0.0])
    t_end = max([e.t for e in events] or [0.0])
    known_slots = {b: v.get("slots") for b, v in dict(header.get("backends") or {}).items()}
    known_slots.update(slots or {})
    colours = _colours(tasks)

    rows = _rows(tasks, group_by, t_end)
    n_lanes = sum(len(lanes) for _, lanes in rows) or 1
    height = min(2.0 + 0.22 * n_lanes, 28.0) + 2.6
    fig = Figure(figsize=(12.0, height), layout="constrained")
    FigureCanvasAgg(fig)
    gantt, conc = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [max(height - 2.6, 1.5), 2.2]}
    )
    _draw_gantt(gantt, rows, colours, t0, t_end)
    _draw_concurrency(conc, tasks, colours, known_slots, t0, t_end)
    session = header.get("session_id", "")
    gantt.set_title(title or f"Timeline of {session or 'a run'}: {len(tasks)} tasks")
    fig.savefig(output, dpi=dpi)
    return Path(output)


def _colours(tasks: Sequence[TaskRecord]) -> dict[str, str]:
    names = sorted({t.backend for t in tasks if t.backend != ENGINE_BACKEND})
    colours = {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(names)}
    colours[ENGINE_BACKEND] = "#333333"
    return colours


def _interval(task: TaskRecord, ends: Mapping[str, float], t_end: float) -> tuple[float, float]:
    """When the task ran. Without a running event (a backend that does not report
    it, later members of a fused chain) it started when it became ready: at its
    submission or when its last dependency ended, whichever is later."""
    end = task.ended if task.ended is not None else t_end
    start = task.started
    if start is None and task.submitted is None:  # never ran (a dependency failed ...)
        return end, end
    if start is None:
        ready = [ends[d] for d in task.deps if d in ends]
        start = max([task.submitted or task.created or end, *ready])
    return min(start, end), end


def _rows(
    tasks: Sequence[TaskRecord], group_by: str, t_end: float
) -> list[tuple[str, list[list[Any]]]]:
    """Rows (label, lanes), each lane a list of (task, start, end), ordered by their
    first start; tasks greedily packed into the first free lane."""
    ends = {t.key: t.ended for t in tasks if t.ended is not None}
    names = {t.key: t.name for t in tasks if t.kind == "block"}
    groups: dict[str, list[tuple[TaskRecord, float, float]]] = {}
    for t in tasks:
        if group_by == "backend":
            label = t.backend
        elif t.workflow_id in names:
            label = f"block {names[t.workflow_id]} [{t.workflow_id}]"
        else:
            label = t.workflow_id or NO_WORKFLOW
        start, end = _interval(t, ends, t_end)
        groups.setdefault(label, []).append((t, start, end))
    rows = []
    for label, items in sorted(groups.items(), key=lambda kv: min(i[1] for i in kv[1])):
        items.sort(key=lambda i: i[1])
        lanes: list[list[Any]] = []
        lane_end: list[float] = []
        for item in items:
            free = next((i for i, e in enumerate(lane_end) if e <= item[1]), None)
            if free is None and len(lanes) < MAX_LANES:
                lanes.append([])
                lane_end.append(0.0)
                free = len(lanes) - 1
            elif free is None:
                free = min(range(len(lane_end)), key=lane_end.__getitem__)
            lanes[free].append(item)
            lane_end[free] = max(lane_end[free], item[2])
        rows.append((label, lanes))
    return rows


def _draw_gantt(
    ax: Any, rows: list[tuple[str, list[list[Any]]]], colours: Mapping[str, str], t0: float,
    t_end: float,
) -> None:  # fmt: skip
    y, ticks, labels = 0.0, [], []
    failed_x, failed_y = [], []
    for label, lanes in rows:
        top = y
        for lane in lanes:
            for task, start, end in lane:
                _draw_bar(ax, task, start - t0, end - t0, y, colours, t0)
                if task.state == TaskState.FAILED:
                    failed_x.append(end - t0)
                    failed_y.append(y + 0.4)
            y += 1.0
        ticks.append((top + y) / 2 - 0.1)
        labels.append(label)
        ax.axhline(y - 0.1, color="#dddddd", lw=0.6)
    if failed_x:
        ax.scatter(failed_x, failed_y, marker="x", color="#C00000", s=28, zorder=5, label="failed")
    ax.set_yticks(ticks, labels, fontsize=8 if len(labels) < 40 else 5)
    ax.set_ylim(y, -0.3)
    ax.set_xlim(0, max(t_end - t0, 1e-3) * 1.01)
    handles = [_patch(colour, name) for name, colour in colours.items() if name != ENGINE_BACKEND]
    if any(task.kind == "block" for _, lanes in rows for lane in lanes for task, _, _ in lane):
        handles.append(_patch("white", "block (runs on the engine)", edge="#333333"))
    handles.append(_patch("white", "cancelled / unfinished", edge="#777777", hatch="///"))
    if failed_x:
        handles.append(ax.collections[-1])
    # outside the axes: a legend inside would hide bars (and failure marks)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    ax.set_axisbelow(True)
    ax.grid(axis="x", color="#eeeeee")


def _draw_bar(
    ax: Any, task: TaskRecord, start: float, end: float, y: float, colours: Mapping[str, str],
    t0: float,
) -> None:  # fmt: skip
    colour = colours.get(task.backend, "#999999")
    if task.submitted is not None and task.submitted - t0 < start:  # waited in the queue
        ax.hlines(y + 0.4, task.submitted - t0, start, color="#bbbbbb", lw=0.8)
    if end <= start:
        return  # never ran: only its marker, if it failed
    width = end - start
    if task.kind == "block":
        ax.broken_barh([(start, width)], (y, 0.8), facecolors="none", edgecolors=colour, lw=1.2)
        return
    hatch = "///" if task.state in (TaskState.CANCELLED, "OPEN") else None
    failed = task.state == TaskState.FAILED
    # a white edge keeps back-to-back tasks of one lane apart
    edge = "#C00000" if failed else (colour if hatch else "white")
    face = "white" if hatch else colour
    ax.broken_barh(
        [(start, width)],
        (y, 0.8),
        facecolors=face,
        edgecolors=edge,
        hatch=hatch,
        lw=1.4 if failed else 0.7,
    )


def _patch(face: str, label: str, edge: str | None = None, hatch: str | None = None) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=face, edgecolor=edge or face, hatch=hatch, label=label)


def _draw_concurrency(
    ax: Any, tasks: Sequence[TaskRecord], colours: Mapping[str, str],
    slots: Mapping[str, Any], t0: float, t_end: float,
) -> None:  # fmt: skip
    ends = {t.key: t.ended for t in tasks if t.ended is not None}
    steps: dict[str, list[tuple[float, int]]] = {}
    for t in tasks:
        if t.backend == ENGINE_BACKEND:
            continue
        start, end = _interval(t, ends, t_end)
        if end > start:
            steps.setdefault(t.backend, []).extend([(start - t0, 1), (end - t0, -1)])
    span = max(t_end - t0, 1e-9)
    for backend, changes in sorted(steps.items()):
        changes.sort()
        xs, ys, level, area, last = [0.0], [0], 0, 0.0, 0.0
        for x, delta in changes:
            area += level * (x - last)
            level += delta
            last = x
            xs.append(x)
            ys.append(level)
        label = f"{backend}: peak {max(ys)}"
        n = slots.get(backend)
        colour = colours.get(backend, "#999999")
        if isinstance(n, int) and n > 0:
            label += f"\n{n} slots, mean utilisation {area / span / n:.0%}"
            ax.axhline(n, color=colour, ls="--", lw=0.9)
        ax.step(xs, ys, where="post", color=colour, lw=1.2, label=label)
    ax.set_ylabel("running tasks")
    ax.set_xlabel("seconds since the start of the log")
    ax.set_ylim(bottom=0)
    if steps:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    ax.set_axisbelow(True)
    ax.grid(color="#eeeeee")

"""Command line.

* ``python -m asyncflow_graph visualize module:function -o graph.svg`` imports a
  workflow-building function and draws what it builds without running anything. The
  function may be a plain function returning script face handles (``Delayed``) or an
  ``async def`` taking a lazy ``WorkflowEngine`` (``flow``) and returning handles.
* ``python -m asyncflow_graph timeline run.jsonl -o timeline.png`` draws a run from
  its JSONL event log (a Gantt chart and a concurrency panel; needs matplotlib).
* ``python -m asyncflow_graph cache ls|stats|clear [--older-than 7d] [--dir DIR]``
  lists, summarizes or prunes a result cache directory (see ``docs/caching.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"expected module:function, got {target!r} (e.g. my_flows:build)")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from exc
    func = getattr(module, attr, None)
    if not callable(func):
        raise SystemExit(f"{module_name!r} has no function {attr!r}")
    return func


async def _draw_async(func: Any, output: str, rankdir: str) -> str:
    from .backends.local import LocalExecutionBackend
    from .engine import WorkflowEngine

    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), execution="lazy")
    try:
        await func(flow)
        drawing = flow.visualize(output, rankdir=rankdir)
    finally:
        await flow.shutdown()
    return str(drawing.filename)


def _visualize(target: str, output: str, rankdir: str) -> str:
    from .script import compile

    func = _load(target)
    if inspect.iscoroutinefunction(func):
        return asyncio.run(_draw_async(func, output, rankdir))
    built = func()
    return str(compile(built).visualize(output, rankdir=rankdir).filename)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asyncflow_graph")
    sub = parser.add_subparsers(dest="command", required=True)
    vis = sub.add_parser("visualize", help="draw a workflow without running it")
    vis.add_argument("target", help="module:function that builds the workflow")
    vis.add_argument("-o", "--output", default="graph.svg", help="svg, png, pdf or dot file")
    vis.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"])
    tl = sub.add_parser("timeline", help="draw a run from its JSONL event log")
    tl.add_argument("log", help="the JSONL event log (start_telemetry(checkpoint_path=...))")
    tl.add_argument("-o", "--output", default="timeline.png", help="png, svg or pdf file")
    tl.add_argument("--group-by", default="workflow", choices=["workflow", "backend"])
    tl.add_argument("--title", default=None)
    from .cache.cli import add_cache_command

    add_cache_command(sub)
    args = parser.parse_args(argv)
    if args.command == "cache":
        from .cache.cli import run_cache_command

        print(run_cache_command(args))
    elif args.command == "visualize":
        print(f"wrote {_visualize(args.target, args.output, args.rankdir)}")
    elif args.command == "timeline":
        print(f"wrote {_timeline(args.log, args.output, args.group_by, args.title)}")
    return 0


def _timeline(log: str, output: str, group_by: str, title: str | None) -> str:
    from pathlib import Path

    if not Path(log).is_file():
        raise SystemExit(f"no such event log: {log}")
    from .telemetry.timeline import plot_timeline

    return str(plot_timeline(log, output, group_by=group_by, title=title))


if __name__ == "__main__":
    sys.exit(main())

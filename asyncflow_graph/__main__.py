"""Command line: ``python -m asyncflow_graph visualize module:function -o graph.svg``.

``visualize`` imports a workflow-building function and draws what it builds
without running anything. The function may be a plain function returning script
face handles (``Delayed``) or an ``async def`` taking a lazy ``WorkflowEngine``
(``flow``) and returning handles.
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
    args = parser.parse_args(argv)
    if args.command == "visualize":
        print(f"wrote {_visualize(args.target, args.output, args.rankdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

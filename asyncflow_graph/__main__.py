"""Command line: ``asyncflow-graph`` (installed script) or ``python -m asyncflow_graph``.

* ``visualize TARGET -o graph.svg`` draws the workflow a function builds, without
  running anything. ``TARGET`` is ``path/to/pipeline.py:build`` or ``pkg.module:build``
  (imported from the current directory). The function may be a plain function returning
  script face handles (``Delayed``) or an ``async def`` taking a lazy ``WorkflowEngine``
  (``flow``) and returning handles.
* ``explain TARGET`` prints the plan of the same workflow (``Plan.explain()``).
* ``timeline run.jsonl -o timeline.png`` draws a run from its JSONL event log (a Gantt
  chart and a concurrency panel; needs matplotlib).
* ``cache ls|stats|clear [--older-than 7d] [--dir DIR]`` lists, summarizes or prunes a
  result cache directory (see ``docs/caching.md``).

Every command is described in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compiler.plan import Plan

__all__ = ["main"]

MODULE_PROG = "python -m asyncflow_graph"


def prog_name(argv0: str | None = None) -> str:
    """The name to show in ``--help``: the installed script's own name, or
    ``python -m asyncflow_graph`` when run as a module (argv[0] is then this file)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(argv0)
    if not name or name in ("__main__.py", "-c") or name.startswith("python"):
        return MODULE_PROG
    return name


# --------------------------------------------------------------------------- targets


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _import_file(spec: str) -> ModuleType:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise SystemExit(f"no such file: {spec} (expected path/to/pipeline.py:function)")
    path = path.resolve()
    # Its own directory first, so the file imports its neighbours as when run as a script.
    sys.path.insert(0, str(path.parent))
    name = path.stem if path.stem.isidentifier() else "_asyncflow_graph_target"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SystemExit(f"cannot load {spec}: not a Python source file")
    module = importlib.util.module_from_spec(loader_spec)
    # Registered before it runs: dataclasses and pickling look modules up by name.
    sys.modules[name] = module
    loader_spec.loader.exec_module(module)
    return module


def _import_module(spec: str) -> ModuleType:
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and spec.split(".", maxsplit=1)[0] != exc.name.split(".")[0]:
            raise  # the target exists but imports something missing: show where
        raise SystemExit(
            f"cannot import {spec!r} from {os.getcwd()}: {exc} "
            f"(give a file path such as path/to/{spec.rsplit('.', maxsplit=1)[-1]}.py:build, "
            f"or run from the directory that holds the module)"
        ) from exc


def load_target(target: str) -> Any:
    """``path/to/file.py:func`` or ``pkg.module:func`` -> the function."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise SystemExit(
            f"expected path/to/pipeline.py:function or module:function, got {target!r} "
            f"(e.g. my_flows.py:build or my_flows:build)"
        )
    module = _import_file(where) if _is_path(where) else _import_module(where)
    func = getattr(module, attr, None)
    if not callable(func):
        found = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module.__name__
        )
        raise SystemExit(f"{where} has no function {attr!r} (functions: {', '.join(found)})")
    return func


async def _with_lazy_engine(func: Any, use: Any) -> Any:
    from .backends.local import LocalExecutionBackend
    from .engine import WorkflowEngine

    # Nothing runs, so the session directory an engine makes goes to a scratch place,
    # not the user's current directory.
    with tempfile.TemporaryDirectory(prefix="asyncflow-graph-cli-") as scratch:
        flow = await WorkflowEngine.create(
            backend=LocalExecutionBackend(), execution="lazy", work_dir=scratch
        )
        try:
            await func(flow)
            return use(flow)
        finally:
            await flow.shutdown()


def _plan_of(func: Any) -> Plan:
    """The compiled plan of what ``func`` builds; nothing runs."""
    from .script import compile

    if inspect.iscoroutinefunction(func):
        plan: Plan = asyncio.run(_with_lazy_engine(func, lambda flow: flow.compile()))
        return plan
    return compile(func())  # handles at any depth (a list, a dict, ...)


# --------------------------------------------------------------------------- commands


def _visualize(args: argparse.Namespace) -> str:
    plan = _plan_of(load_target(args.target))
    return f"wrote {plan.visualize(args.output, rankdir=args.rankdir).filename}"


def _explain(args: argparse.Namespace) -> str:
    return _plan_of(load_target(args.target)).explain()


def _timeline(args: argparse.Namespace) -> str:
    if not Path(args.log).is_file():
        raise SystemExit(
            f"no such event log: {args.log} (a run writes one with "
            f"record_events(flow, 'run.jsonl') or start_telemetry(checkpoint_path=...))"
        )
    from .telemetry.timeline import plot_timeline

    drawn = plot_timeline(args.log, args.output, group_by=args.group_by, title=args.title)
    return f"wrote {drawn}"


def _cache(args: argparse.Namespace) -> str:
    from .cache.cli import run_cache_command

    return run_cache_command(args)


TARGET_HELP = "path/to/pipeline.py:function or package.module:function that builds the workflow"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or prog_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Draw, explain and inspect asyncflow_graph workflows.",
        epilog=f"Run '{prog} COMMAND --help' for a command's options; docs/cli.md has examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    vis = sub.add_parser(
        "visualize",
        help="draw a workflow without running it",
        description="Draw the workflow a function builds, without running anything.",
        epilog=f"example: {prog} visualize examples/guide/cli_pipeline.py:build -o graph.svg",
    )
    vis.add_argument("target", help=TARGET_HELP)
    vis.add_argument("-o", "--output", default="graph.svg", help="svg, png, pdf or dot file")
    vis.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"])
    vis.set_defaults(run=_visualize)
    exp = sub.add_parser(
        "explain",
        help="print the plan of a workflow without running it",
        description="Print the compiled plan (partitions, fused chains, errors) of a workflow.",
        epilog=f"example: {prog} explain examples/guide/cli_pipeline.py:build",
    )
    exp.add_argument("target", help=TARGET_HELP)
    exp.set_defaults(run=_explain)
    tl = sub.add_parser(
        "timeline",
        help="draw a run from its JSONL event log",
        description="Draw a run from its JSONL event log (needs matplotlib).",
        epilog=f"example: {prog} timeline run.jsonl -o timeline.png --group-by backend",
    )
    tl.add_argument("log", help="the JSONL event log (record_events(flow, 'run.jsonl'))")
    tl.add_argument("-o", "--output", default="timeline.png", help="png, svg or pdf file")
    tl.add_argument("--group-by", default="workflow", choices=["workflow", "backend"])
    tl.add_argument("--title", default=None)
    tl.set_defaults(run=_timeline)
    from .cache.cli import add_cache_command

    add_cache_command(sub)
    sub.choices["cache"].epilog = f"example: {prog} cache clear --older-than 7d"
    sub.choices["cache"].set_defaults(run=_cache)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asyncflow-graph")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    print(args.run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

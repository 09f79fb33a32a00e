"""``python -m asyncflow_graph cache ls|stats|clear``: look into and prune a cache
directory (``--dir``, default ``./.asyncflow-cache``)."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from typing import Any

from . import DEFAULT_DIRECTORY
from .store import Entry, Store

__all__ = ["add_cache_command", "parse_age", "run_cache_command"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"--older-than takes an age such as 30m, 12h, 7d or 2w, got {text!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def add_cache_command(sub: Any) -> None:
    cache = sub.add_parser("cache", help="list, summarize or clear a result cache")
    cache.add_argument(
        "--dir",
        default=DEFAULT_DIRECTORY,
        help=f"the cache directory (default {DEFAULT_DIRECTORY})",
    )
    cache.add_argument(
        "--trust-group", action="store_true", help="accept a group-writable directory"
    )
    actions = cache.add_subparsers(dest="action", required=True)
    actions.add_parser("ls", help="one line per entry: age, size, task, key")
    actions.add_parser("stats", help="entries, bytes, hits and compute time stored")
    clear = actions.add_parser("clear", help="remove entries")
    clear.add_argument(
        "--older-than", type=parse_age, default=None, metavar="AGE",
        help="only entries not used for AGE (30m, 12h, 7d, 2w)",
    )  # fmt: skip


def run_cache_command(args: argparse.Namespace) -> str:
    store = Store(args.dir, trust_group=args.trust_group)
    try:
        if args.action == "ls":
            return _ls(store.entries())
        if args.action == "stats":
            return _stats(store.entries(), str(store.root))
        removed = store.clear(older_than=args.older_than)
        return f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {store.root}"
    finally:
        store.close()


def _ls(entries: Sequence[Entry]) -> str:
    if not entries:
        return "(no entries)"
    now = time.time()
    lines = [f"{'used':>8}  {'size':>9}  {'hits':>5}  {'ran':>8}  task  key"]
    for e in sorted(entries, key=lambda e: max(e.last_used, e.created), reverse=True):
        age = _age(now - max(e.last_used, e.created))
        lines.append(
            f"{age:>8}  {_size(e.size):>9}  {e.hits:>5}  {e.duration:>7.3f}s  {e.task}  {e.key}"
        )
    return "\n".join(lines)


def _stats(entries: Sequence[Entry], root: str) -> str:
    total = sum(e.size for e in entries)
    by_task: dict[str, int] = {}
    for e in entries:
        by_task[e.task] = by_task.get(e.task, 0) + 1
    top = ", ".join(f"{t} ({n})" for t, n in sorted(by_task.items(), key=lambda x: -x[1])[:10])
    return "\n".join(
        [
            f"cache directory: {root}",
            f"entries: {len(entries)}",
            f"bytes: {total} ({_size(total)})",
            f"hits recorded: {sum(e.hits for e in entries)}",
            f"compute time stored: {sum(e.duration for e in entries):.3f} s",
            f"tasks: {top or '-'}",
        ]
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"

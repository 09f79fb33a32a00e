"""Memory of long runs: what an engine keeps once the handles are dropped.

``python -m benchmarks.memory [--checkout PATH ...] [--bursts 100] [--burst 10000]
[--results 20] [--mb 50] [--out PATH]``

Two scenarios, each in a fresh Python process with ``PYTHONPATH`` set to a checkout
(this one by default; give ``--checkout`` several times to compare, e.g. main and a
branch), one ``LocalExecutionBackend`` engine each:

* **bursts**: ``--bursts`` bursts of ``--burst`` no-op async tasks; each burst is
  gathered, then its handles are dropped. Reported: RSS after the first and after
  the last burst (and their difference), peak RSS, seconds per burst first/last.
* **large results**: ``--results`` tasks one after another, each returning a
  ``--mb`` MB ``bytearray``; each is awaited, then its handle and value dropped.
  Reported: RSS before the first task (engine started) and after the last one.

RSS is the process's resident set now (``/proc/self/statm``), read after a
``gc.collect()`` and two loop turns (the engine acts on dropped handles in its next
loop turn). Prints a Markdown table; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import asyncio, gc, json, os, resource, sys, time
from asyncflow_graph import LocalExecutionBackend, WorkflowEngine

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

async def settled():
    gc.collect()
    for _ in range(2):
        await asyncio.sleep(0)
    return rss_mb()

async def bursts(n_bursts, size):
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def noop(i):
        return i

    rss, times = [], []
    for _ in range(n_bursts):
        t0 = time.perf_counter()
        handles = [noop(i) for i in range(size)]
        await asyncio.gather(*handles)
        del handles
        times.append(time.perf_counter() - t0)
        rss.append(await settled())
    await flow.shutdown()
    return {"rss_first": rss[0], "rss_last": rss[-1], "rss_max": max(rss),
            "s_first": times[0], "s_last": times[-1], "tasks": n_bursts * size}

async def large(n, mb):
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    async def big():
        return bytearray(mb * 2**20)

    base = await settled()
    for _ in range(n):
        h = big()
        value = await h
        del h, value
    after = await settled()
    await flow.shutdown()
    return {"rss_base": base, "rss_after": after, "results": n, "mb": mb}

scenario, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = asyncio.run(bursts(a, b) if scenario == "bursts" else large(a, b))
out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(checkout: Path, scenario: str, a: int, b: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    with tempfile.TemporaryDirectory() as cwd:  # engines make their session dirs here
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, scenario, str(a), str(b)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{checkout} {scenario}: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def commit_of(checkout: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()[:70] or str(checkout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, action="append")
    parser.add_argument("--bursts", type=int, default=100)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=20)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    checkouts = args.checkout or [Path(__file__).resolve().parent.parent]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}.",
        "",
        f"**Bursts**: {args.bursts} x {args.burst:,} no-op tasks, handles dropped after "
        f"each burst (RSS in MB).",
        "",
        "| checkout | RSS after first burst | after last | last - first | max | "
        "peak | s/burst first | last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    large_lines = [
        "",
        f"**Large results**: {args.results} tasks returning {args.mb} MB each, one after "
        f"another, each handle and value dropped (RSS in MB).",
        "",
        "| checkout | RSS before | after the last | after - before | peak |",
        "|---|---|---|---|---|",
    ]
    for checkout in checkouts:
        name = commit_of(checkout)
        b = child(checkout, "bursts", args.bursts, args.burst)
        lines.append(
            f"| {name} | {b['rss_first']:.0f} | {b['rss_last']:.0f} | "
            f"{b['rss_last'] - b['rss_first']:+.0f} | {b['rss_max']:.0f} | "
            f"{b['peak_rss']:.0f} | {b['s_first']:.3f} | {b['s_last']:.3f} |"
        )
        print(lines[-1], flush=True)
        g = child(checkout, "large", args.results, args.mb)
        large_lines.append(
            f"| {name} | {g['rss_base']:.0f} | {g['rss_after']:.0f} | "
            f"{g['rss_after'] - g['rss_base']:+.0f} | {g['peak_rss']:.0f} |"
        )
        print(large_lines[-1], flush=True)
    text = "\n".join(lines + large_lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Same-run before/after rates: one workload, two checkouts, alternating.

``python -m benchmarks.compare BEFORE AFTER [--cells W1:10000,W2:2000,W3:4096]
[--repeat 7] [--system asyncflow_graph-local]``

Each run is a fresh ``python -m benchmarks.worker SYSTEM WORKLOAD N`` process with
``PYTHONPATH`` set to one checkout (its ``asyncflow_graph`` and its ``benchmarks``),
started in an empty directory so nothing else is imported. Runs alternate between
the two checkouts (BEFORE, AFTER, BEFORE, ...), so drift of a shared machine hits
both alike; each cell reports the median and the spread of its runs and the ratio
AFTER / BEFORE of the medians. Prints a Markdown table. ``--clock cpu`` times with
the process's CPU time instead of the wall clock (a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: ``--clock cpu``: the worker's clock is the process's CPU time, not the wall clock (on a
#: machine other jobs load, CPU time moves far less; tasks/s are then per CPU second)
CPU_WORKER = (
    "import time, benchmarks.systems as s; s.perf_counter = time.process_time; "
    "import sys, benchmarks.worker as w; w.main(sys.argv[1:])"
)


def run_once(
    checkout: Path, system: str, workload: str, n: int, cwd: str, clock: str = "wall"
) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    worker = ["-m", "benchmarks.worker"] if clock == "wall" else ["-c", CPU_WORKER]
    proc = subprocess.run(
        [sys.executable, *worker, system, workload, str(n)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    if record.get("status") != "ok" or record.get("check") not in ("ok", "skipped"):
        raise RuntimeError(f"{checkout}: {record}")
    return float(record["tasks_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--cells", default="W1:10000,W2:2000,W3:4096")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--system", default="asyncflow_graph-local")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args(argv)
    cells = [(w, int(n)) for w, n in (c.split(":") for c in args.cells.split(","))]
    unit = "tasks/s" if args.clock == "wall" else "tasks per CPU s"
    print(f"| cell | before ({unit}, median of {args.repeat}) | after | after / before |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cwd:
        for workload, n in cells:
            rates: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeat):
                for label, checkout in (("before", args.before), ("after", args.after)):
                    rate = run_once(checkout, args.system, workload, n, cwd, args.clock)
                    rates[label].append(rate)
            b, a = (statistics.median(rates[k]) for k in ("before", "after"))
            spread = {k: (min(v), max(v)) for k, v in rates.items()}
            print(
                f"| {workload} n={n} | {b:,.0f} ({spread['before'][0]:,.0f}-"
                f"{spread['before'][1]:,.0f}) | {a:,.0f} ({spread['after'][0]:,.0f}-"
                f"{spread['after'][1]:,.0f}) | {a / b:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

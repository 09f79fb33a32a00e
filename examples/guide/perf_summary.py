"""Headline numbers from benchmarks/RESULTS.md: median tasks/s per workload for
asyncflow_graph and the systems it is compared with."""

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"
SYSTEMS = {  # column -> system name in RESULTS.md
    "asyncflow_graph": "asyncflow_graph-local",
    "AsyncFlow": "radical-asyncflow-local",
    "dask.delayed": "dask-delayed-threads",
    "dask.distributed": "dask-distributed-processes",
}


def tables(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """workload title -> size -> system -> median tasks/s (or why there is none)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
        elif title and line.startswith("| ") and not line.startswith("| size"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            size, system, rate = cells[0], cells[2], cells[3].strip("*")
            out.setdefault(title, {}).setdefault(size, {})[system] = rate
    return out


def main() -> None:
    text = RESULTS.read_text()
    date = re.search(r"^- Date: (.*)$", text, re.MULTILINE)
    print("benchmark run:", date.group(1) if date else "unknown")
    print(f"{'workload':<30}{'size':>10}" + "".join(f"{c:>17}" for c in SYSTEMS))
    for title, sizes in tables(text).items():
        if title.startswith("W5"):
            continue  # build + compile only: no execution to compare
        for size, rates in sizes.items():
            row = "".join(f"{rates.get(s, 'n/a'):>17}" for s in SYSTEMS.values())
            print(f"{title:<30}{size:>10}{row}")


if __name__ == "__main__":
    main()

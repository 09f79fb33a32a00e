"""Run one (system, workload, size) measurement and print one JSON line.

Usage: ``python -m benchmarks.worker SYSTEM WORKLOAD N``. Never raises: a system that cannot be
imported or lacks an attribute is reported with status "n/a", any other failure as "error".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import resource
import sys
from typing import Any

from benchmarks.systems import SYSTEMS, Job, Measurement, System, Unsupported
from benchmarks.workloads import WORKLOADS


def module_version(module: str) -> str:
    """Version of an importable module (its ``__version__`` or its distribution's)."""
    try:
        mod = sys.modules.get(module) or importlib.import_module(module)
    except ImportError:
        return "not installed"
    version = getattr(mod, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(system: System, job: Job, tasks: int, results: list[Any] | None) -> str:
    """Return "ok" if the sink values add up to the task count ("skipped": not checkable)."""
    if results is None or not system.checks_results(job.workload):
        return "skipped"
    total = sum(r for r in results if isinstance(r, int))
    return "ok" if total == tasks else f"mismatch ({total} != {tasks})"


def measured(system: System, job: Job, tasks: int, m: Measurement) -> dict[str, Any]:
    return {
        "status": "ok",
        "elapsed_s": m.elapsed_s,
        "tasks_per_s": tasks / m.elapsed_s if m.elapsed_s > 0 else None,
        "setup_s": m.setup_s,
        "teardown_s": m.teardown_s,
        "check": check(system, job, tasks, m.results),
    }


def run(system_name: str, workload_name: str, n: int) -> dict[str, Any]:
    system = SYSTEMS[system_name]
    job = Job(WORKLOADS[workload_name], n)
    tasks = job.workload.tasks(n)
    record: dict[str, Any] = {
        "system": system_name,
        "workload": workload_name,
        "n": n,
        "tasks": tasks,
    }
    try:
        record |= measured(system, job, tasks, system.function_for(job.workload)(job))
    except (ImportError, AttributeError, NotImplementedError, Unsupported) as exc:
        record |= {"status": "n/a", "reason": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:
        record |= {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    versions = {m: module_version(m) for m in system.modules}
    record["versions"] = versions or {"python": platform.python_version()}
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def main(argv: list[str]) -> int:
    system_name, workload_name, n = argv
    print(json.dumps(run(system_name, workload_name, int(n))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Overhead of telemetry: 10,000 no-op tasks with telemetry off, spans on, JSONL on.

``python -m benchmarks.telemetry [--tasks N] [--repeat R] [--out PATH]``

Every configuration runs in this one process, interleaved (off, spans, ..., off,
spans, ..., the order rotated each round, ``gc.collect()`` before each run) so drift
of the machine hits all of them alike; each cell is the median
of ``--repeat`` runs. A run creates a fresh engine with one ``LocalExecutionBackend``,
starts the configuration's telemetry, then times from creating the first task to
having every result (the same definition as ``benchmarks/RESULTS.md``). Ending the
telemetry (``stop()``: closing spans, flushing, the last metrics collection) is timed
separately. The spans configurations check that every task span was exported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncflow_graph import WorkflowEngine, __version__
from asyncflow_graph.backends import LocalExecutionBackend
from asyncflow_graph.telemetry import record_events

OUT = Path(__file__).with_name("TELEMETRY_RESULTS.md")


class _CountingExporter(SpanExporter):  # type: ignore[misc]
    """Exports nowhere; counts what it got (proves no span was dropped)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


async def _noop() -> None:
    return None


async def _run(
    n: int, setup: Callable[[WorkflowEngine], Awaitable[Any]], work_dir: Path
) -> tuple[float, float]:
    """(seconds to all results, seconds to end the telemetry). Each engine makes its
    session directory under ``work_dir``, not in the current directory."""
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(), work_dir=work_dir)
    try:
        task = flow.function_task(_noop)
        stop = await setup(flow)
        t0 = time.perf_counter()
        await asyncio.gather(*[task() for _ in range(n)])
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        if stop is not None:
            await stop()
        return elapsed, time.perf_counter() - t1
    finally:
        await flow.shutdown()


def _configs(n: int, tmp: Path) -> dict[str, Callable[[WorkflowEngine], Awaitable[Any]]]:
    async def off(flow: WorkflowEngine) -> None:
        return None

    async def spans_memory(flow: WorkflowEngine) -> Any:
        exporter = InMemorySpanExporter()
        tel = await flow.start_telemetry(span_processors=[SimpleSpanProcessor(exporter)])

        async def stop() -> None:
            await tel.stop()
            tasks = sum(1 for s in exporter.get_finished_spans() if s.name == "task")
            assert tasks == n, f"{tasks} task spans exported, expected {n}"

        return stop

    async def metrics_only(flow: WorkflowEngine) -> Any:
        tel = await flow.start_telemetry()
        return tel.stop

    async def spans_kept(flow: WorkflowEngine) -> Any:
        tel = await flow.start_telemetry(keep_spans=True)

        async def stop() -> None:
            await tel.stop()
            tasks = sum(1 for s in tel.read_traces() if s.name == "task")
            assert tasks == n, f"{tasks} task spans kept, expected {n}"

        return stop

    async def spans_batch(flow: WorkflowEngine) -> Any:
        exporter = _CountingExporter()
        processor = BatchSpanProcessor(exporter, max_queue_size=2 * n, schedule_delay_millis=500)
        tel = await flow.start_telemetry(span_processors=[processor])

        async def stop() -> None:
            await tel.stop()
            assert exporter.count >= n, f"{exporter.count} spans exported, expected >= {n}"
            processor.shutdown()

        return stop

    async def jsonl(flow: WorkflowEngine) -> Any:
        cm = record_events(flow, tmp / f"{flow.uid}.jsonl")
        cm.__enter__()

        async def stop() -> None:
            cm.__exit__(None, None, None)

        return stop

    return {
        "telemetry off": off,
        "start_telemetry(), no span processor (counters, metrics)": metrics_only,
        "spans on (in memory: keep_spans=True)": spans_kept,
        "spans on (SimpleSpanProcessor + InMemorySpanExporter)": spans_memory,
        "spans on (BatchSpanProcessor, no-op exporter)": spans_batch,
        "JSONL event log on": jsonl,
    }


def _sdk_floor(n: int) -> float:
    """Seconds to build ``n`` task spans' OpenTelemetry objects alone (attributes,
    SpanContext, ReadableSpan) in a tight loop: what any per-task span costs."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanContext, TraceFlags

    new_id, flags = RandomIdGenerator().generate_span_id, TraceFlags(TraceFlags.SAMPLED)
    parent, resource = SpanContext(1, 2, False, flags), Resource.create({})
    t0 = time.perf_counter()
    for i in range(n):
        attrs = {
            "session_id": "s", "task_id": f"task.{i}", "executable": "noop",
            "task_type": "function", "backend": "default", "status": "completed",
            "asyncflow.state": "DONE", "asyncflow.partition_id": 0,
        }  # fmt: skip
        ctx = SpanContext(1, new_id(), False, flags)
        ReadableSpan("task", ctx, parent, resource, attrs, start_time=i, end_time=i + 1)
    return time.perf_counter() - t0


def measure(n: int, repeat: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        configs = _configs(n, Path(tmp))
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        asyncio.run(_run(1000, configs["telemetry off"], Path(tmp)))  # warm-up: imports, pools
        names = list(configs)
        for r in range(repeat):
            # rotate the order each round, so no configuration always runs first
            for name in names[r % len(names) :] + names[: r % len(names)]:
                gc.collect()  # the last run's garbage must not be collected in this one
                runs[name].append(asyncio.run(_run(n, configs[name], Path(tmp))))
                print(f"  {name}: {runs[name][-1][0]:.3f} s", file=sys.stderr)
    floor = statistics.median(_sdk_floor(n) for _ in range(repeat))
    runs["(reference) OTel SDK span objects alone, tight loop, no engine"] = [(floor, 0.0)]
    base = statistics.median(t for t, _ in runs["telemetry off"])
    base_best = min(t for t, _ in runs["telemetry off"])
    rows = []
    for name, samples in runs.items():
        med = statistics.median(t for t, _ in samples)
        if name.startswith("(reference)"):
            rows.append(
                {
                    "config": name,
                    "median_s": med,
                    "tasks_per_s": n / med,
                    "overhead": med / base,
                    "us_per_task": med / n * 1e6,
                    "best_overhead": med / base_best,
                    "stop_s": 0.0,
                }
            )
            continue
        best = min(t for t, _ in samples)
        rows.append(
            {
                "config": name,
                "median_s": med,
                "tasks_per_s": n / med,
                "overhead": med / base - 1.0,
                "us_per_task": (med - base) / n * 1e6,
                "best_overhead": best / base_best - 1.0,
                "stop_s": statistics.median(s for _, s in samples),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], n: int, repeat: int) -> str:
    head = [
        "# Telemetry overhead",
        "",
        f"{n:,} no-op `async def` function tasks on one `LocalExecutionBackend`, median of "
        f"{repeat} runs per row, all rows in the same process, interleaved (order rotated "
        f"each round, `gc.collect()` before each run). Time = creating "
        f"the first task -> every result; *stop* = `await telemetry.stop()` / closing the "
        f"log afterwards (closing spans, flushing processors, last metrics collection, "
        f"which records the task-duration histogram). The machine is shared (2 cores): "
        f"noise only adds time, so the overhead of the best runs is shown too.",
        "",
        f"asyncflow_graph {__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, {time.strftime('%Y-%m-%d')}. "
        f"Run: `python -m benchmarks.telemetry`.",
        "",
        "| configuration | median time (s) | tasks/s | overhead vs off (median) "
        "| overhead vs off (best of runs) | added µs per task | stop (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines = [
        f"| {r['config']} | {r['median_s']:.3f} | {r['tasks_per_s']:,.0f} | "
        f"{r['overhead']:+.1%} | {r['best_overhead']:+.1%} | {r['us_per_task']:.2f} | "
        f"{r['stop_s']:.3f} |"
        for r in rows
    ]
    notes = [
        "",
        "The reference row is not a run: its time is what building 10,000 task spans' "
        "OpenTelemetry objects costs alone, and its percentages are that time as a share of "
        "the telemetry-off run. It is the floor of any design that emits one SDK span per "
        "task; the rest of a spans row is the hooks, the counters behind the metrics and "
        "the span processor's own work (`SimpleSpanProcessor` attaches an OTel context per "
        "span; `BatchSpanProcessor` wakes its export thread, which competes for the GIL).",
    ]
    return "\n".join([*head, *lines, *notes, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = measure(args.tasks, args.repeat)
    text = render(rows, args.tasks, args.repeat)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

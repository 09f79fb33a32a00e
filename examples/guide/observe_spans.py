"""OpenTelemetry spans, AsyncFlow telemetry events and a summary of one run.

The span processor is the real OpenTelemetry SDK's: an OTLP or Jaeger exporter
plugs in the same way (wrapped in a BatchSpanProcessor)."""

import asyncio
from collections import Counter

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend(name="cpu"))
    exporter = InMemorySpanExporter()
    telemetry = await flow.start_telemetry(span_processors=[SimpleSpanProcessor(exporter)])
    events = Counter()
    telemetry.subscribe(lambda event: events.update([event.event_type]))

    @flow.function_task
    async def square(x: int) -> int:
        return x * x

    @flow.function_task
    async def broken() -> None:
        raise ValueError("bad input")

    @flow.block
    async def total(n: int) -> int:
        return sum(await asyncio.gather(*(square(i) for i in range(n))))

    async with flow.workflow_scope("analysis"):
        print("total:", await total(3))
        await asyncio.gather(broken(), return_exceptions=True)
    await telemetry.stop()

    spans = exporter.get_finished_spans()
    names = {span.context.span_id: span.name for span in spans}
    tree = Counter((names.get(s.parent.span_id) if s.parent else None, s.name) for s in spans)
    for (parent, name), n in sorted(tree.items(), key=str):
        print(f"  {parent} -> {name}: {n}")
    failed = next(s for s in spans if s.attributes.get("status") == "failed")
    print({k: failed.attributes[k] for k in ("task_id", "executable", "backend", "status")})
    print("error:", failed.status.description)
    print("events:", dict(sorted(events.items())))
    summary = telemetry.summary()
    print("tasks:", summary["tasks"])
    print("per backend:", list(summary["backends"]))
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

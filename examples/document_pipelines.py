"""Five document pipelines mixing compute and AI backends, run concurrently.

``preprocess`` and ``postprocess`` run on a LocalExecutionBackend named "compute" (the
default backend); ``summarize`` is a prompt task routed to a NoopExecutionBackend named "ai",
which answers every prompt with "Dummy Prompt Output".
"""

import asyncio

from asyncflow_graph import LocalExecutionBackend, NoopExecutionBackend, WorkflowEngine

N_DOCS = 5


async def main() -> None:
    compute = await LocalExecutionBackend(name="compute")
    ai = NoopExecutionBackend(name="ai")
    flow = await WorkflowEngine.create(backend=[compute, ai])
    print(f"default backend: {flow.backend.name}")

    @flow.function_task
    async def preprocess(doc_id):
        await asyncio.sleep(0.05)
        return f"doc-{doc_id}:clean"

    @flow.prompt_task(backend="ai")
    async def summarize(text):
        return f"Summarize this document: {text}"

    @flow.function_task
    async def postprocess(doc_id, summary):
        return f"doc-{doc_id}:{summary}"

    async def pipeline(doc_id):
        cleaned = preprocess(doc_id)
        summary = summarize(cleaned)
        final = postprocess(doc_id, summary)
        return await final

    results = await asyncio.gather(*(pipeline(i) for i in range(N_DOCS)))
    for result in results:
        print(f"result: {result}")
    print(f"pipelines: {len(results)}")

    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

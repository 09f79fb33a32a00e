"""Mistake: reading an InputFile that no task it depends on produces."""

import asyncio
from pathlib import Path

from asyncflow_graph import InputFile, LocalExecutionBackend, OutputFile, WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())

    @flow.function_task
    def produce(out: OutputFile) -> str:
        Path(out).write_text("1,2,3")
        return out.filename

    @flow.function_task
    def read(data: InputFile, *after: str) -> str:
        return Path(data).read_text()

    made = produce(OutputFile("data.csv"))
    wrong = read(InputFile("data.csv"))  # nothing this task waits for writes data.csv
    fixed = read(InputFile("data.csv"), made)  # the fix: depend on the task that writes it
    try:
        await wrong
    except FileNotFoundError as exc:
        print(f"{type(exc).__name__}: {exc}")
    print("fixed:", await fixed)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

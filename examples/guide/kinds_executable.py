"""Executable tasks: the builder runs once its inputs are resolved, with their values,
and returns a command: a shell string, or an argv list that never sees a shell."""

import asyncio
from pathlib import Path

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.errors import CommandFailedError


async def main() -> None:
    flow = await WorkflowEngine.create(backend=LocalExecutionBackend())
    Path("scratch").mkdir(exist_ok=True)

    @flow.function_task
    def who() -> str:
        return "world"

    @flow.executable_task
    def shout(name: str) -> str:  # `name` is the value "world", not a future
        return f"echo 'hello,   {name}' | tr a-z A-Z"  # a string runs through /bin/sh

    @flow.executable_task
    def count_words(text: str) -> list[str]:  # an argv list: exec'd, no shell at all
        return ["python3", "-c", "import sys; print(len(sys.argv[1].split()))", text]

    @flow.executable_task(task_description={"shell": False})
    def no_shell() -> str:  # shell=False: the string is shlex-split and exec'd
        return "printf '[%s]' 'a  b' '$HOME'"

    @flow.executable_task
    def where() -> str:
        return 'echo "$(basename "$PWD") $GREETING"'

    @flow.executable_task(capture_stdio=True)
    def to_file() -> list[str]:  # capture_stdio: the result is the stdout file's path
        return ["echo", "saved"]

    @flow.executable_task
    def broken() -> list[str]:
        return ["sh", "-c", "echo 'disk full' >&2; exit 3"]

    greeting = shout(who())
    print("shout:", (await greeting).strip())  # the result is stdout, a str
    print("count_words:", (await count_words(greeting)).strip())
    print("no_shell:", await no_shell())
    place = where(task_description={"cwd": "scratch", "env": {"GREETING": "hi"}})
    print("where:", (await place).strip())
    path = await to_file()
    print("to_file:", Path(path).name, "->", Path(path).read_text().strip())
    try:
        await broken()
    except CommandFailedError as exc:  # a RuntimeError, as in AsyncFlow
        print("broken:", exc.exit_code, exc.stderr.strip())
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

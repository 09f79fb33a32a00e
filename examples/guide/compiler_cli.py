"""A workflow-building function for the command line drawer:

    python -m asyncflow_graph visualize compiler_cli:build -o graph.svg

`build` returns script-face handles; nothing runs.
"""

import asyncflow_graph as ag


@ag.function_task
def split(text: str) -> list[str]:
    return text.split()


@ag.function_task
def count(words: list[str]) -> int:
    return len(words)


@ag.executable_task
def archive(n: int) -> list[str]:
    return ["echo", f"{n} words"]


def build() -> ag.Delayed:
    return archive(count(split("a small graph to draw")))


if __name__ == "__main__":
    print(ag.compile(build()).explain())

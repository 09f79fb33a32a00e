"""The script face: build a graph with module-level decorators, draw it to
out/graph.svg, then compute it synchronously — no asyncio in sight."""

from pathlib import Path

import asyncflow_graph as ag


@ag.function_task
def load(i: int) -> list[int]:
    return list(range(i * 10, i * 10 + 10))


@ag.function_task
def square_sum(xs: list[int]) -> int:
    return sum(x * x for x in xs)


@ag.function_task(pure=True)
def total(parts: list[int]) -> int:
    return sum(parts)


@ag.executable_task
def announce(value: int) -> list[str]:
    return ["echo", f"total={value}"]


def build() -> ag.Delayed:
    parts = [square_sum(load(i)) for i in range(4)]
    return announce(total(parts))


if __name__ == "__main__":
    final = build()
    print(ag.compile(final).explain())
    Path("out").mkdir(exist_ok=True)  # every example writes under out/
    drawing = final.visualize("out/graph.svg")
    print(f"drew {drawing.filename}")
    (out,) = ag.compute(final)
    print("result:", out.strip())

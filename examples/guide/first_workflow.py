"""Getting started, step 1: build a graph, look at it, then compute it.

The module-level decorators build a graph and run nothing; compile() and
visualize() show it; compute() runs it from plain synchronous code.
"""

import asyncflow_graph as ag


@ag.function_task
def load(name: str) -> list[int]:
    return [len(name), 10 * len(name)]


@ag.function_task
def total(values: list[int]) -> int:
    return sum(values)


@ag.function_task
def report(a: int, b: int) -> str:
    return f"{a} + {b} = {a + b}"


if __name__ == "__main__":
    final = report(total(load("alpha")), total(load("beta")))  # nothing runs yet

    print(ag.compile(final).explain())  # the plan the compiler made
    drawing = final.visualize("out/graph.svg")  # needs Graphviz's `dot`
    print("drew", drawing.filename)

    print("result:", final.compute())  # runs the five tasks, returns the value

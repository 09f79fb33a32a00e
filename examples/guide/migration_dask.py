"""From dask.delayed: module-level decorators build the graph, compute() runs it,
visualize() draws it, pure=True shares identical calls."""

import asyncflow_graph as ag

calls = []


@ag.function_task  # dask: @dask.delayed
def inc(x: int) -> int:
    calls.append("inc")
    return x + 1


@ag.function_task(pure=True)  # dask: @dask.delayed(pure=True)
def expensive(x: int) -> int:
    calls.append("expensive")
    return x * 100


@ag.function_task
def add(*xs: int) -> int:
    return sum(xs)


if __name__ == "__main__":
    a = expensive(3)
    b = expensive(3)  # same function, same arguments: the same node
    print("shared:", a.key == b.key, a is b)
    total = add(inc(1), a, b)
    print("graph:", len(total.graph), "tasks")

    total.visualize("out/total.svg")  # dask: total.visualize()
    print("value:", total.compute())  # dask: total.compute()
    print("calls:", sorted(calls))  # expensive ran once

    # dask.compute(*objs): any structure of handles, results in the same structure
    (pair, table) = ag.compute([inc(10), inc(20)], {"x": add(1, 2)})
    print("structure:", pair, table)

"""Benchmarks comparing asyncflow_graph with raw asyncio, RADICAL AsyncFlow and Dask.

Run with ``python -m benchmarks`` (see ``benchmarks/README.md``). Every measurement runs in a
fresh subprocess (:mod:`benchmarks.worker`) so that imports, caches and leaked threads of one
system never influence another.
"""

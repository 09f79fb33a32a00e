"""The graph compiler: pure passes from an immutable graph to a partitioned plan."""

from .passes import (
    assign_backends,
    compile_plan,
    cull,
    fuse,
    merge_graph_units,
    partition,
    validate,
)
from .plan import ENGINE_BACKEND, Capabilities, Partition, Plan, Unit, failed_plan

__all__ = [
    "ENGINE_BACKEND",
    "Capabilities",
    "Partition",
    "Plan",
    "Unit",
    "assign_backends",
    "compile_plan",
    "cull",
    "failed_plan",
    "fuse",
    "merge_graph_units",
    "partition",
    "validate",
]

"""AsyncFlow's ``radical.asyncflow.workflow_manager`` module path: the engine and
the component-type constants, so ``from asyncflow_graph.workflow_manager import
WorkflowEngine, FUNCTION`` works after rewriting an AsyncFlow import."""

from __future__ import annotations

from .engine import WorkflowEngine
from .spec import TaskKind

__all__ = ["BLOCK", "EXECUTABLE", "FUNCTION", "PROMPT", "TASK", "WorkflowEngine"]

#: component types (a description's uid starts with one of them)
TASK = "task"
BLOCK = TaskKind.BLOCK.value
#: task types
FUNCTION = TaskKind.FUNCTION.value
EXECUTABLE = TaskKind.EXECUTABLE.value
PROMPT = TaskKind.PROMPT.value

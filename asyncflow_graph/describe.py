"""AsyncFlow's component description dict, built from a node on demand.

Handles expose it as ``.task``/``.block`` and the AsyncFlow backend adapter sends
it to ``submit_tasks``; the engine never builds it on the hot path.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from .data import InputFile, OutputFile
from .spec import Node, TaskKind

__all__ = ["describe"]


def describe(
    node: Node,
    nodes: Mapping[str, Node] | None = None,
    *,
    args: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    backend: str | None = None,
    payload: Any = None,
    depth: int = 1,
) -> dict[str, Any]:
    """The dict AsyncFlow 0.6 builds for a component. Upstream descriptions in
    ``metadata.dependencies`` are one level deep (their own lists are empty)."""
    a = node.args if args is None else args
    kw = dict(node.kwargs if kwargs is None else kwargs)
    deps = []
    if nodes is not None and depth > 0:
        deps = [describe(nodes[d], nodes, depth=0) for d in node.deps if d in nodes]
    d: dict[str, Any] = {
        "uid": node.key,
        "name": node.name,
        "function": node.func if node.kind is TaskKind.FUNCTION else None,
        "args": a,
        "kwargs": kw,
        "executable": None,
        "prompt": None,
        "is_service": node.options.service,
        "task_backend_specific_kwargs": dict(node.options.task_description),
        "target_backend": node.options.backend if backend is None else backend,
        "capture_stdio": node.options.capture_stdio,
        "workflow_id": node.workflow_id,
        "metadata": {
            "dependencies": deps,
            "input_files": [x.filename for x in a if isinstance(x, InputFile)],
            "output_files": [x.filename for x in a if isinstance(x, OutputFile)],
        },
        "_tel_task_type": node.kind.value,
    }
    if node.kind is TaskKind.EXECUTABLE:
        argv = _argv(payload)
        d["executable"] = argv[0] if argv else None
        d["arguments"] = argv[1:]
        d["_tel_executable"] = d["executable"]
    elif node.kind is TaskKind.PROMPT:
        d["prompt"] = payload if isinstance(payload, str) else None
        d["_tel_executable"] = node.name
    else:
        d["_tel_executable"] = node.name
    return d


def _argv(payload: Any) -> list[str]:
    if payload is None:
        return []
    if payload.argv is not None:
        return list(payload.argv)
    return shlex.split(payload.shell)

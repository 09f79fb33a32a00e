"""Refuse, with the fix, to start worker processes from a script without a main guard.

An embedded ``LocalCluster`` starts its workers with the ``spawn`` method: each
worker process imports the user's script again. Without ``if __name__ ==
"__main__":`` around the code that runs the workflow, that import runs it again in
the worker, which fails deep inside multiprocessing and leaves the user with
"Nanny failed to start ... check that the scheduler is running" - the wrong cause.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["check_main_guard"]


def check_main_guard(backend: str) -> None:
    """Raise when ``__main__`` is a script whose top level has no main guard."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path is None or not path.endswith(".py"):
        return  # an interactive session, a notebook, python -c: nothing re-imports it
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    if any(_is_main_guard(stmt) for stmt in tree.body):
        return
    raise ConfigurationError(
        f"DaskExecutionBackend {backend!r} starts an embedded LocalCluster whose worker "
        f"processes import your script {path!r} again, and that script runs the workflow "
        f"at import time (it has no main guard). Put the code that runs it under\n\n"
        f'    if __name__ == "__main__":\n        asyncio.run(main())\n\n'
        f"or start the cluster with threads instead of processes "
        f"(DaskExecutionBackend(processes=False)), or connect to a running scheduler "
        f"(address= or scheduler_file=)"
    )


def _is_main_guard(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.If):
        return False
    names = {n.id for n in ast.walk(stmt.test) if isinstance(n, ast.Name)}
    return "__name__" in names

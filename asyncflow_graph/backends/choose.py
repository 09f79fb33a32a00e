"""Turning what the user passed as ``backend=`` into native backends."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigurationError
from ..protocol import Backend

__all__ = ["normalize_backends"]

log = logging.getLogger("asyncflow_graph")

_REQUIRED_ASYNCFLOW = ("submit_tasks", "register_callback")


def normalize_backends(backend: Any, dry_run: bool) -> list[Backend]:
    """One backend, a list of them, or None (AsyncFlow's defaults). AsyncFlow-style
    objects are wrapped in an adapter; names must be unique."""
    from .adapter import AsyncFlowBackendAdapter
    from .asyncflow_api import asyncflow_overrides
    from .local import LocalExecutionBackend
    from .noop import NoopExecutionBackend

    if backend is None:
        if dry_run:
            return [NoopExecutionBackend()]
        log.warning("no backend given: using LocalExecutionBackend() (a thread pool)")
        return [LocalExecutionBackend()]
    items = list(backend) if isinstance(backend, list | tuple) else [backend]
    if not items:
        raise ConfigurationError("backend= is an empty list; pass at least one backend")
    out: list[Backend] = []
    for b in items:
        if isinstance(b, Backend):
            # A subclass overriding AsyncFlow's API (submit_tasks, cancel_task, ...)
            # is driven through it, so the override is what runs.
            out.append(AsyncFlowBackendAdapter(b) if asyncflow_overrides(b) else b)
        elif all(callable(getattr(b, m, None)) for m in _REQUIRED_ASYNCFLOW):
            out.append(AsyncFlowBackendAdapter(b))
        else:
            missing = [m for m in _REQUIRED_ASYNCFLOW if not callable(getattr(b, m, None))]
            raise ConfigurationError(
                f"{b!r} is not a backend: it lacks {', '.join(missing)}. Pass an "
                f"asyncflow_graph backend (LocalExecutionBackend, ...) or an AsyncFlow-style "
                f"object with submit_tasks(tasks) and register_callback(func)"
            )
    names = [b.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(
            f"backend names must be unique, {', '.join(map(repr, dupes))} is used more than "
            f"once; give each backend its own name= (e.g. LocalExecutionBackend(name='cpu'))"
        )
    return out

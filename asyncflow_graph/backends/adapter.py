"""Adapter for AsyncFlow/RHAPSODY-style backends.

Such a backend takes ``submit_tasks(list[dict])`` and reports back through the
callback given to ``register_callback`` with ``(task_dict, state)``. The adapter
translates our units into AsyncFlow's description dicts (values already resolved)
and the callback states into Reporter events, with AsyncFlow's rules for the
result (``return_value`` for functions, ``stdout`` otherwise) and the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import InputFile
from ..describe import describe
from ..errors import BackendError
from ..protocol import Backend, BackendContext, Capabilities, Command, Reporter, Work
from ..spec import EMPTY_MAPPING, Node, TaskKind, bind
from .asyncflow_api import mark_attached

__all__ = ["TERMINAL_STATES", "AsyncFlowBackendAdapter", "report_state"]

log = logging.getLogger("asyncflow_graph")


class AsyncFlowBackendAdapter(Backend):
    # AsyncFlow backends get one task per submission and decide on prompts themselves.
    capabilities = Capabilities(supports_prompts=True, fuse_chains=False)

    def __init__(self, backend: Any) -> None:
        super().__init__(str(getattr(backend, "name", type(backend).__name__)))
        self.wrapped = backend
        self._tasks: dict[str, dict[str, Any]] = {}  # uid -> dict in flight
        self._background: set[asyncio.Task[Any]] = set()
        #: set by the engine from create(implicit_data=...)
        self.implicit_data = True
        kind = type(backend)
        self._implicit = bool(getattr(kind, "supports_implicit_data_linking", False))
        self._explicit = bool(getattr(kind, "supports_explicit_data_linking", False))
        self._sent: dict[str, dict[str, Any]] = {}  # uid -> dict, kept only when linking
        #: every node the engine compiled (set by the engine): the dependencies'
        #: descriptions go into each dict's metadata, as AsyncFlow's do
        self.known_nodes: Mapping[str, Node] = EMPTY_MAPPING
        #: our own backends get the command exactly as built, not re-joined tokens
        self._own = isinstance(backend, Backend)

    async def start(self, context: BackendContext) -> None:
        await super().start(context)
        mark_attached(self.wrapped, context)
        self.wrapped.register_callback(self._callback)

    def submit(self, works: Sequence[Work]) -> None:
        tasks = [self._task_dict(w) for w in works]
        linking = (self._implicit and self.implicit_data) or self._explicit
        for w, t in zip(works, tasks, strict=True):
            self._tasks[t["uid"]] = t
            if linking:
                self._link(w, t)
                self._sent[t["uid"]] = t
        task = asyncio.ensure_future(self._submit(tasks))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _task_dict(self, work: Work) -> dict[str, Any]:
        node = work.nodes[0]
        args, kwargs = bind(node, work.inputs)
        task = describe(node, self.known_nodes, args=args, kwargs=kwargs, payload=work.payload)
        if self._own and isinstance(work.payload, Command):
            task["_command"] = work.payload
        return task

    def _link(self, work: Work, task: dict[str, Any]) -> None:
        """AsyncFlow's data-linking hooks, for backends that declare them: implicit
        links for dependencies without output files, explicit links for files a
        dependency produces and this task reads, staging for the other inputs."""
        b = self.wrapped
        wanted = {f.filename: f for f in task["args"] if isinstance(f, InputFile)}
        for dep_key in dict.fromkeys(work.nodes[0].deps):
            dep = self._sent.get(dep_key)
            if dep is None:
                continue
            outputs = dep["metadata"]["output_files"]
            if not outputs and self._implicit and self.implicit_data:
                b.link_implicit_data_deps(dep, task)
            for name in outputs:
                if name in wanted and self._explicit:
                    b.link_explicit_data_deps(src_task=dep, dst_task=task, file_name=name)
                    del wanted[name]
        if self._explicit:
            for name, f in wanted.items():
                b.link_explicit_data_deps(
                    src_task=None, dst_task=task, file_name=name, file_path=f.filepath
                )

    async def _submit(self, tasks: list[dict[str, Any]]) -> None:
        try:
            await self.wrapped.submit_tasks(tasks)
        except Exception as exc:
            log.exception("backend %r: submit_tasks raised", self.name)
            for t in tasks:
                if self._tasks.pop(t["uid"], None) is not None:
                    self.context.reporter.failed(
                        t["uid"],
                        BackendError(f"backend {self.name!r} submit_tasks failed: {exc!r}"),
                    )

    def _callback(self, task: dict[str, Any], state: str, *_: Any) -> None:
        uid = task.get("uid")
        if uid not in self._tasks:
            log.warning("backend %r reported unknown task %r (%s)", self.name, uid, state)
            return
        if state in TERMINAL_STATES:
            self._tasks.pop(uid, None)
        report_state(self.context.reporter, uid, task, state)

    async def cancel(self, work: Work) -> None:
        if self._tasks.pop(work.key, None) is not None:
            try:
                await self.wrapped.cancel_task(work.key)
            except Exception:
                log.exception("backend %r: cancel_task(%r) raised", self.name, work.key)

    async def close(self) -> None:
        shutdown = getattr(self.wrapped, "shutdown", None)
        if shutdown is not None:
            await shutdown()

    def state(self) -> str:
        inner = getattr(self.wrapped, "state", None)
        return str(inner()) if callable(inner) else super().state()


TERMINAL_STATES = frozenset({"DONE", "FAILED", "CANCELED", "CANCELLED"})


def report_state(reporter: Reporter, uid: str, task: dict[str, Any], state: str) -> None:
    """One AsyncFlow callback state as a Reporter event: ``RUNNING``, ``DONE``
    (``return_value`` of a function task, else ``stdout``), ``FAILED`` (the
    ``exception``, else ``stderr``), ``CANCELED``; other states are ignored."""
    if state == "RUNNING":
        reporter.running(uid)
    elif state == "DONE":
        reporter.done(uid, _result(task))
    elif state == "FAILED":
        reporter.failed(uid, _error(task))
    elif state in TERMINAL_STATES:
        reporter.cancelled(uid)


def _result(task: dict[str, Any]) -> Any:
    if task.get("_tel_task_type") == TaskKind.FUNCTION.value:
        return task.get("return_value")
    if "stdout" not in task and isinstance(task.get("response"), list):
        # RHAPSODY's AI backends answer in "response" and never set stdout.
        response = task["response"]
        return response[0] if len(response) == 1 else response
    return task.get("stdout")


def _error(task: dict[str, Any]) -> BaseException:
    exc = task.get("exception")
    if isinstance(exc, BaseException):
        return exc
    return BackendError(str(exc or task.get("stderr") or "failed with unknown error"))


def share_nodes(backends: Sequence[Backend], nodes: Mapping[str, Node]) -> None:
    """AsyncFlow-style backends get the dependencies' descriptions in each task
    dict's metadata: their adapters read the compiled nodes."""
    for b in backends:
        if isinstance(b, AsyncFlowBackendAdapter):
            b.known_nodes = nodes

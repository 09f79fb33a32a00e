"""The Dask backend's record of the groups it sent (client side of ``dask_chunks``).

For each Dask graph it lays out the groups (``Unit.groups`` of the graph units in
it): one ``run_group`` task each; it turns the summary each group's worker tells
(a Dask event) into the group's per-task outcomes and measured durations; it
decides what a group that failed as a whole means for its tasks (a dead worker:
resubmit them; an upstream failure Dask passed on: resubmit the tasks that did not
depend on it; anything else: each task fails with it); and it stops single tasks
inside groups (``cancel_in_groups`` on every worker).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._gc import gc_paused
from ..errors import ConfigurationError
from ..protocol import Coarsening, Outcome, Reporter
from ..spec import Node
from .dask_chunks import OK, cancel_in_groups, group_summary
from .dask_refs import DurationModel, GroupRef, group_task, model_for, outcomes_of

__all__ = ["Groups", "Sent"]

log = logging.getLogger("asyncflow_graph")


class Sent:
    """The groups of one Dask graph."""

    __slots__ = ("by_key", "errored", "groups", "local")

    def __init__(self) -> None:
        self.groups: list[GroupRef] = []  # topological
        #: member key -> (its group's Dask key, its index in the group)
        self.local: dict[str, tuple[str, int]] = {}
        self.by_key: dict[str, GroupRef] = {}  # Dask key -> its group
        #: groups whose Dask task failed as a whole, with the error
        self.errored: list[tuple[GroupRef, BaseException | None]] = []

    def __bool__(self) -> bool:
        return bool(self.groups)


class Groups:
    """Every group a Dask backend has in flight, and its duration model."""

    def __init__(self, backend: str, enabled: bool = True, target: float = 0.1) -> None:
        if not isinstance(enabled, bool):
            raise ConfigurationError(f"coarsen= must be True or False, got {enabled!r}")
        if isinstance(target, bool) or not isinstance(target, int | float) or not target > 0:
            raise ConfigurationError(
                f"chunk_seconds= must be a number of seconds > 0 (the work one Dask task "
                f"of grouped tasks aims at, e.g. 0.1), got {target!r}"
            )
        self.backend = backend
        self.enabled = enabled
        self.target = target
        self.model = DurationModel()
        self.members: dict[str, GroupRef] = {}  # open key -> its group in flight
        self._marks: dict[str, list[str]] = {}  # group Dask key -> keys to stop there
        self._marking: asyncio.Future[None] | None = None
        self._client: Any = None
        self._report: Reporter | None = None
        self.running: dict[str, GroupRef] = {}  # Dask key -> group in flight
        #: the Dask event topic workers tell this backend's progress on
        self.topic = f"asyncflow-graph-{uuid.uuid4().hex[:12]}"

    def attach(self, client: Any, report: Reporter) -> None:
        self._client = client
        self._report = report
        self.model = model_for(str(client.scheduler.address))
        client.subscribe_topic(self.topic, self._told)

    def detach(self) -> None:
        if self._client is not None:
            try:
                self._client.unsubscribe_topic(self.topic)
            except Exception as exc:  # the cluster may be gone
                log.debug("dask backend %r: unsubscribing failed: %r", self.backend, exc)

    def hints(self) -> Coarsening | None:
        if not self.enabled or self._client is None:
            return None
        workers = int(self._client.scheduler_info().get("total_threads") or 1)
        return Coarsening(
            workers, self.model.durations, self.model.sizes, target=self.target, long=self.target
        )

    # -- sending ------------------------------------------------------------------------

    def layout(
        self,
        groups: Sequence[tuple[str, ...]],
        nodes: Mapping[str, Node],
        dask_key: Callable[[str], str],
    ) -> Sent:
        """Dask keys for ``groups`` (our keys of each group, in order)."""
        sent = Sent()
        fid = self.model.fid
        for keys in groups:
            dk = dask_key(keys[0])
            inside = set(keys)
            flat = not any(d in inside for k in keys for d in nodes[k].deps)
            group = GroupRef(dk, keys, [fid(nodes[k].func) for k in keys], flat)
            sent.groups.append(group)
            sent.by_key[dk] = group
            for i, k in enumerate(keys):
                sent.local[k] = (dk, i)
        return sent

    def tasks(
        self,
        sent: Sent,
        nodes: Mapping[str, Node],
        inputs: Mapping[str, Any],
        local: Mapping[str, tuple[str, int]],
        resources: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """The Dask tasks of ``sent``'s groups; a group's ``resources=`` (the same
        for all its tasks) go into ``resources``."""
        dsk: dict[str, Any] = {}
        for g in sent.groups:
            members = [nodes[k] for k in g.keys]
            dsk[g.key] = group_task(g.key, members, inputs, local, self.backend, self.topic)
            if members[0].options.resources:
                resources[g.key] = dict(members[0].options.resources)
        return dsk

    def bind(self, sent: Sent, futures: Iterable[Any]) -> None:
        """Keep each group's future (it holds the values on the cluster)."""
        by_key = sent.by_key
        for fut in futures:
            g = by_key.get(fut.key)
            if g is not None:
                g.future = fut
                self.running[g.key] = g
                for k in g.keys:
                    self.members[k] = g

    # -- outcomes -----------------------------------------------------------------------

    async def ended(
        self, sent: Sent, fut: Any, report: Reporter, done: dict[str, Any], failed: set[str]
    ) -> None:
        """A group's Dask task finished, erred or was cancelled."""
        g = sent.by_key[fut.key]
        self.running.pop(g.key, None)
        for k, (ok, value) in g.early.items():
            if ok:
                done[k] = value
            else:
                failed.add(k)
        if fut.status != "finished":
            exc = await fut.exception() if fut.status == "error" else None
            sent.errored.append((g, exc))
            return
        summary = g.summary
        if summary is None:  # its worker's event did not come first: ask for it
            summary = await self._client.submit(group_summary, fut, pure=False)
        # a burst of objects that live on (refs, values, dispatched dependents)
        with gc_paused(len(g.keys)):
            outcomes = self._open(g, outcomes_of(g, summary, self.backend))
            for key, ok, value in outcomes:
                if ok:
                    done[key] = value
                else:
                    failed.add(key)
            self.model.learn(g, summary)
            if outcomes:
                report.ended(outcomes)

    def _open(self, g: GroupRef, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes of ``g``'s keys still open here (not cancelled meanwhile)."""
        members = self.members
        if g.open < len(g.keys):
            outcomes = [o for o in outcomes if o[0] in members]
        for k in g.keys:
            members.pop(k, None)
        g.open = 0
        return outcomes

    def settle(
        self,
        sent: Sent,
        nodes: Mapping[str, Node],
        done: Mapping[str, Any],
        failed: set[str],
        deaths: dict[str, int],
        explain: Callable[[BaseException, Node], BaseException],
    ) -> list[str]:
        """After the whole graph ended: what the groups that failed as a whole mean
        for their open keys. Returns the keys to send again (one Dask task each).

        A worker that died mid-group is charged to the task its worker told was
        running (``deaths``, against that task's ``retries=``), never to the others:
        they are sent again. Dask passing on an upstream failure (or cancel) fails
        nothing either."""
        lost: list[str] = []
        if not sent.errored:
            return lost
        report = self._report
        assert report is not None
        order = {id(g): i for i, g in enumerate(sent.groups)}
        # what failed in this graph, and (in topological order) everything fed by it:
        # the executor ends those with their failed inputs
        doomed = set(failed)
        for k, node in nodes.items():
            if k not in doomed and any(d in doomed for d in node.deps):
                doomed.add(k)
        for g, exc in sorted(sent.errored, key=lambda e: order[id(e[0])]):
            inside = set(g.keys)
            passed_on = exc is None or any(
                d in nodes and d not in done and d not in inside
                for k in g.keys
                for d in nodes[k].deps
            )
            died = not passed_on and _worker_died(exc)
            for i, k in enumerate(g.keys):
                if self.members.pop(k, None) is None:
                    continue  # cancelled, or told ended while it ran
                node = nodes[k]
                if any(d in doomed for d in node.deps):
                    doomed.add(k)  # the executor ends it with its failed input
                    continue
                if passed_on or (died and i != g.running):
                    lost.append(k)
                    continue
                if died and deaths.get(k, 0) < node.options.retries:
                    deaths[k] = deaths.get(k, 0) + 1
                    lost.append(k)
                    continue
                assert exc is not None
                report.failed(k, explain(exc, node))
                doomed.add(k)
        if lost:
            log.warning(
                "dask backend %r: %d tasks of failed groups sent again, one Dask task each",
                self.backend,
                len(lost),
            )
        return lost

    def _told(self, event: tuple[float, Any]) -> None:
        """A worker told how a long-running group goes (``dask_progress``): report
        the tasks that ended in it, and the one running now."""
        msg = event[1]
        g = self.running.get(str(msg.get("group"))) if isinstance(msg, dict) else None
        report = self._report
        if g is None or report is None:
            return
        if "end" in msg:
            g.summary = msg["end"]  # reported when Dask says the group's task ended
            return
        members = self.members
        outcomes: list[Outcome] = []
        for j, state, payload in msg["done"]:
            key = g.keys[j]
            if payload is None or members.get(key) is not g:
                continue
            try:
                value = pickle.loads(payload)
            except Exception as exc:  # the group's status will tell it again
                log.debug("dask backend %r: progress of %s unreadable: %r", self.backend, key, exc)
                continue
            del members[key]
            g.open -= 1
            ok = state == OK
            g.early[key] = (ok, value)
            outcomes.append((key, ok, value))
        if outcomes:
            report.ended(outcomes)
        g.running = msg["running"]
        key = g.keys[g.running]
        if members.get(key) is g:
            report.running(key)

    def waits_on_status(self, sent: Sent, node: Node, done: Mapping[str, Any]) -> bool:
        """Does ``node`` (a single task of this graph) take an input from a group of
        this graph whose status is not in yet?"""
        return bool(sent) and any(d in sent.local and d not in done for d in node.deps)

    def fail_open(self, sent: Sent, report: Reporter, error: Callable[[], BaseException]) -> None:
        for g in sent.groups:
            for k in g.keys:
                if self.members.pop(k, None) is not None:
                    report.failed(k, error())

    # -- stopping -----------------------------------------------------------------------

    async def cancel(self, nodes: Iterable[Node]) -> list[Any]:
        """Stop these tasks inside their groups. Returns the Dask futures of the
        groups none of whose tasks is wanted any more (to cancel on the cluster;
        Dask cancels their dependents too, and ``settle`` sends the tasks of those
        that were still wanted again). Every worker skips the tasks if they have
        not started. Returns once every worker has been told; the
        cancels of one loop turn share one message."""
        whole: list[Any] = []
        for n in nodes:
            g = self.members.pop(n.key, None)
            if g is None:
                continue
            g.open -= 1
            # marked even when the whole group goes: a worker thread already running
            # it goes on after Dask's cancel, and must skip what is left
            self._marks.setdefault(g.key, []).append(n.key)
            if g.open == 0:
                self.running.pop(g.key, None)
                if g.future is not None:
                    whole.append(g.future)
        if self._marks and self._client is not None:
            if self._marking is None:
                self._marking = asyncio.ensure_future(self._mark())
            await asyncio.shield(self._marking)
        return whole

    async def _mark(self) -> None:
        marks, self._marks = self._marks, {}
        self._marking = None
        try:
            await self._client.run(cancel_in_groups, marks)
        except Exception as exc:  # the cluster may be gone: nothing is left to stop
            log.warning("dask backend %r: stopping tasks in groups failed: %r", self.backend, exc)

    def open_futures(self) -> list[Any]:
        groups = {id(g): g for g in self.members.values()}.values()
        self.members.clear()
        return [g.future for g in groups if g.future is not None]


def _worker_died(exc: BaseException | None) -> bool:
    return exc is not None and type(exc).__name__ == "KilledWorker"

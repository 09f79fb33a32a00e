"""``DaskExecutionBackend``: run partitions on a Dask distributed cluster.

* One asynchronous ``distributed.Client`` on the engine's own loop. The compiler
  hands this backend each partition's function tasks as one graph unit, and every
  batch of ready work becomes **one** Dask graph in one ``update-graph`` message.
* Results stay on the cluster: each task is reported done with a
  :class:`~asyncflow_graph.backends.base.Remote` holding its Dask future; later Dask
  work depends on that future directly, and the value only travels to this process
  when a handle is awaited or a task elsewhere needs it.
* ``retries=`` and ``resources`` of a task become Dask's own per-task retries and
  worker-resource restrictions; a task whose workers keep dying ends with Dask's
  ``KilledWorker`` wrapped in a clear :class:`~asyncflow_graph.errors.BackendError`.
* Workers need ``asyncflow_graph`` importable (the task wrapper lives here), as
  they need every library the tasks use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..errors import BackendError, ConfigurationError, missing_dependency
from ..protocol import Backend, BackendContext, Capabilities, Coarsening, Remote, Work
from ..spec import Node
from .dask_batch import Batch, Call, call_node, explain, run_command, worker_died
from .dask_data import has_large_values, scatter_large_values, split_unpicklable, without
from .dask_faults import connection_lost, lost_error, reconnected, value_error
from .dask_groups import Groups, Sent
from .dask_guard import check_main_guard
from .dask_refs import fetch_refs, wire
from .dask_security import embedded_cluster_options

__all__ = ["DaskExecutionBackend"]

log = logging.getLogger("asyncflow_graph")

#: how long ``cancel`` waits for the scheduler to confirm it let go of the keys
CANCEL_CONFIRM_TIMEOUT = 10.0
# Scheduler task states in which a task may still run, or start its dependents.
_IN_FLIGHT = frozenset({"waiting", "queued", "no-worker", "processing"})


# Statuses of a Dask future that ended and then went back before the watcher looked
# at it: "lost" (its value died with a worker: the scheduler's "lost-data"), "pending"
# (a gather found the value missing and asked the scheduler again).
_WENT_BACK = frozenset({"lost", "pending"})


async def _as_completed(client: Any, futures: list[Any]) -> AsyncIterator[Any]:
    """The futures as they end (finished, erred or cancelled). One that went back
    (see ``_WENT_BACK``) is waited for again, not yielded: Dask computes a lost value
    again for every client holding its future, and a future yielded in neither state
    would leave its task without an ending (on a busy loop "key-in-memory" and
    "lost-data" can both arrive before the watcher runs)."""
    from distributed import as_completed

    # The client's loop, given explicitly: a user's client need not be the default one.
    ended = as_completed(futures, loop=client.loop)  # type: ignore[no-untyped-call]
    async for fut in ended:
        if fut.status in _WENT_BACK:
            log.debug("dask: the value of %s was lost before it was seen; waiting", fut.key)
            ended.add(fut)  # type: ignore[no-untyped-call]
        else:
            yield fut


class DaskExecutionBackend(Backend):
    """Run tasks on Dask distributed.

    With no connection argument an embedded ``LocalCluster(**local_cluster_kwargs)``
    is started (and closed at shutdown). ``address=`` or ``scheduler_file=`` connect
    to a running scheduler (``dask scheduler`` on an HPC machine, dask-mpi);
    ``client=`` or ``cluster=`` (e.g. a dask-jobqueue ``SLURMCluster``) use the
    user's object, which is never closed here.

    ``security=``: the embedded cluster speaks TLS under temporary credentials and
    refuses every other client (``security=False`` turns that off); for
    ``address=``/``scheduler_file=``, the ``distributed.security.Security`` that
    the running scheduler requires (see :mod:`.dask_security`)."""

    capabilities = Capabilities(
        needs_pickle=True, remote=True, graph_units=True, handles_retries=True
    )

    def __init__(
        self,
        name: str = "dask",
        client: Any = None,
        address: str | None = None,
        scheduler_file: str | None = None,
        cluster: Any = None,
        *,
        connect_timeout: float = 20.0,
        coarsen: bool = True,
        chunk_seconds: float = 0.1,
        security: Any = None,
        **local_cluster_kwargs: Any,
    ) -> None:
        super().__init__(name)
        given = {
            k: v
            for k, v in {
                "client": client,
                "address": address,
                "scheduler_file": scheduler_file,
                "cluster": cluster,
            }.items()
            if v is not None
        }
        if len(given) > 1:
            raise ConfigurationError(
                f"DaskExecutionBackend takes one of client=, address=, scheduler_file=, "
                f"cluster= — got {', '.join(given)}"
            )
        if given and local_cluster_kwargs:
            raise ConfigurationError(
                f"LocalCluster options ({', '.join(local_cluster_kwargs)}) only apply to the "
                f"embedded cluster; remove them or drop {next(iter(given))}="
            )
        self._user_client = client
        self._address = address
        self._scheduler_file = scheduler_file
        self._user_cluster = cluster
        self._connect_timeout = connect_timeout
        #: the embedded cluster's (TLS, temporary credentials) unless given: see dask_security
        self._security = security
        self._cluster_kwargs = local_cluster_kwargs
        self._client: Any = None
        self._own_client = False
        self._own_cluster: Any = None
        self._futures: dict[str, Any] = {}  # our key -> Dask future while it runs
        self._watchers: set[asyncio.Task[None]] = set()
        self._to_cancel: list[Any] = []  # Dask futures the next cancel message stops
        self._cancelling: asyncio.Future[None] | None = None
        self._closed = False
        self._tag = ""
        self._groups = Groups(name, coarsen, chunk_seconds)
        self._seen = ""  # the scheduler's address, for errors once it is gone

    @property
    def client(self) -> Any:
        """The asynchronous ``distributed.Client`` (after the engine started)."""
        if self._client is None:
            raise RuntimeError(f"Dask backend {self.name!r} is not started yet")
        return self._client

    def state(self) -> str:
        if self._closed:
            return "SHUTDOWN"
        return "RUNNING" if self._client is not None else "INITIALIZED"

    # -- connecting -----------------------------------------------------------------------

    async def start(self, context: BackendContext) -> None:
        await super().start(context)
        try:
            import distributed
        except ImportError as exc:
            raise missing_dependency("distributed", "dask", "DaskExecutionBackend") from exc
        # Keys are unique per engine; the tag keeps two engines on one cluster apart.
        self._tag = context.engine_uid.rpartition(".")[2]
        try:
            self._client = await self._connect(distributed)
        except ConfigurationError:
            raise  # the user's set-up, not the connection: its message has the fix
        except Exception as exc:
            raise BackendError(
                f"Dask backend {self.name!r} could not connect to {self._target()}: "
                f"{type(exc).__name__}: {exc}. Check that the scheduler is running and "
                f"reachable (dask scheduler --scheduler-file ...; dask worker ...)"
            ) from exc
        self._seen = str(self._client.scheduler.address)
        self._groups.attach(self._client, context.reporter)
        log.info("dask backend %r connected to %s", self.name, self._seen)

    def coarsening(self) -> Coarsening | None:
        """Grouping hints for the compiler (``coarsen=False``: none): the cluster's
        worker threads and the durations measured on it."""
        return self._groups.hints()

    def _target(self) -> str:
        if self._address:
            return f"scheduler {self._address!r}"
        if self._scheduler_file:
            return f"the scheduler in scheduler file {self._scheduler_file!r}"
        if self._user_cluster is not None:
            return f"cluster {self._user_cluster!r}"
        if self._user_client is not None:
            return f"client {self._user_client!r}"
        return "an embedded LocalCluster"

    async def _connect(self, distributed: Any) -> Any:
        Client = distributed.Client
        timeout = self._connect_timeout
        if self._user_client is not None:
            if getattr(self._user_client, "asynchronous", False):
                return self._user_client
            # A synchronous client runs its own loop thread: talk to its scheduler
            # with our own asynchronous client on the engine's loop instead.
            address = self._user_client.scheduler.address
            self._security = self._security or getattr(self._user_client, "security", None)
        elif self._user_cluster is not None:
            address = self._user_cluster.scheduler_address
            self._security = self._security or getattr(self._user_cluster, "security", None)
        elif self._address is not None or self._scheduler_file is not None:
            address = self._address
        else:
            given = dict(self._cluster_kwargs)
            if self._security is not None:
                given["security"] = self._security
            kwargs = embedded_cluster_options(distributed, given)
            if kwargs.get("processes", True):
                check_main_guard(self.name)
            self._own_cluster = await distributed.LocalCluster(asynchronous=True, **kwargs)
            address = self._own_cluster.scheduler_address
            self._security = self._own_cluster.security
        self._own_client = True
        secure = {"security": self._security} if self._security not in (None, False) else {}
        if address is None:
            return await Client(
                scheduler_file=self._scheduler_file, asynchronous=True, timeout=timeout, **secure
            )
        return await Client(address, asynchronous=True, timeout=timeout, **secure)

    # -- running ------------------------------------------------------------------------

    def _dask_key(self, node: Node, attempt: int, kind: str = "") -> str:
        # The part before the first "-" is what Dask's dashboard groups tasks by; a
        # resubmission after a lost worker needs a fresh key.
        suffix = f"-r{attempt}" if attempt else ""
        return f"{node.name}-{kind}{node.key}-{self._tag}{suffix}"

    def submit(self, works: Sequence[Work]) -> None:
        batch = Batch()
        for w in works:
            batch.add_work(w)
        if has_large_values(batch.nodes, batch.inputs):
            self._track(self._scatter_then_send(batch))
            return
        self._send(batch, 0)

    def _track(self, coro: Any) -> None:
        watcher = asyncio.ensure_future(coro)
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _scatter_then_send(self, batch: Batch) -> None:
        """Large values go to the cluster first, off the loop (see dask_data)."""
        try:
            await scatter_large_values(self.client, batch.nodes, batch.inputs, self.name)
        except Exception as exc:
            report = self.context.reporter
            for key in batch.nodes:
                report.failed(
                    key, BackendError(f"Dask backend {self.name!r} could not scatter: {exc!r}")
                )
            return
        self._send(batch, 0)

    def _send(self, batch: Batch, attempt: int) -> None:
        """One Dask graph, one ``update-graph`` message, for everything in ``batch``."""
        nodes = batch.nodes
        sent = self._groups.layout(
            batch.groups, nodes, lambda k: self._dask_key(nodes[k], attempt, "chunk-")
        )
        local = dict(sent.local)
        for k, n in nodes.items():
            if k not in local:
                local[k] = (self._dask_key(n, attempt), -1)
        dsk: dict[str, Any] = {}
        retries: dict[str, int] = {}
        resources: dict[str, dict[str, Any]] = {}
        for key, node in batch.nodes.items():
            if key in sent.local:
                continue
            dk = local[key][0]
            command = batch.commands.get(key)
            if command is not None:
                dsk[dk] = (run_command, command)
            else:
                dsk[dk] = self._task(node, batch.inputs, local)
            if node.options.retries:
                retries[dk] = node.options.retries
            if node.options.resources:
                resources[dk] = dict(node.options.resources)
        ours = {dk: k for k, (dk, i) in local.items() if i < 0}
        try:
            if sent:
                dsk.update(self._groups.tasks(sent, nodes, batch.inputs, local, resources))
            futures = self.client.get(
                dsk,
                list(dsk),
                sync=False,
                # Per-key annotations: Dask calls a callable annotation with each key.
                retries=defaultdict(int, retries).__getitem__ if retries else None,
                resources=defaultdict(dict, resources).__getitem__ if resources else None,
            )
        except Exception as exc:  # the graph as a whole could not be sent
            if batch.groups:  # again without groups: each task on its own tells its fault
                self._send(batch.only(list(nodes)), attempt)
            else:
                self._send_apart(batch, attempt, dsk, ours, exc)
            return
        if sent:
            self._groups.bind(sent, futures)
        for fut in futures:
            if fut.key in ours:
                self._futures[ours[fut.key]] = fut
        self._track(self._watch(batch, futures, ours, attempt, sent))

    def _send_apart(
        self,
        batch: Batch,
        attempt: int,
        dsk: Mapping[str, Any],
        ours: Mapping[str, str],
        exc: BaseException,
    ) -> None:
        """A batch that could not be sent: the tasks that cannot be pickled fail
        (each naming its argument), the rest go again without them; if none is to
        blame, every task fails. Never a task left without an ending."""
        where = f"the Dask cluster of backend {self.name!r}"
        bad = split_unpicklable(dsk, batch.nodes, ours, where)
        if not bad:
            err = BackendError(f"Dask backend {self.name!r} could not submit: {exc!r}")
            bad = dict.fromkeys(batch.nodes, err)
        # Reported on the next loop turn: submit must not re-enter the executor.
        self.context.loop.call_soon(self._fail_all, bad)
        rest = without(batch.nodes, set(bad))
        if rest:
            self._send(batch.only(rest), attempt)

    def _fail_all(self, errors: Mapping[str, BaseException]) -> None:
        report = self.context.reporter
        for key, err in errors.items():
            report.failed(key, err)

    def _task(
        self, node: Node, inputs: Mapping[str, Any], local: Mapping[str, tuple[str, int]]
    ) -> tuple[Any, ...]:
        names, refs, picks, consts = wire(node.deps, inputs, local, self.name)
        return (call_node, Call(node, names, consts, picks), refs)

    async def _watch(
        self, batch: Batch, futures: list[Any], ours: Mapping[str, str], attempt: int, sent: Sent
    ) -> None:
        report = self.context.reporter
        done: dict[str, Any] = {}  # our key -> its Remote value
        failed: set[str] = set()  # keys reported failed
        lost: list[str] = []  # keys whose workers died: resubmitted below
        later: list[Any] = []  # failed single tasks fed by a group whose status is not in
        gone: list[str] = []  # keys lost with the scheduler: resubmitted once it is back
        try:
            async for fut in _as_completed(self.client, futures):
                if fut.key in sent.by_key:
                    await self._groups.ended(sent, fut, report, done, failed)
                    continue
                key = ours[fut.key]
                if fut.status == "finished":
                    done[key] = value = Remote(self.name, fut)
                    self._futures.pop(key, None)
                    report.done(key, value)
                elif fut.status == "error":
                    self._futures.pop(key, None)
                    if self._groups.waits_on_status(sent, batch.nodes[key], done):
                        later.append(fut)
                    else:
                        await self._failed(batch, key, fut, done, failed, lost)
                elif fut.status == "cancelled" and self._futures.pop(key, None) is not None:
                    self._cancelled(batch, key, fut, done, attempt, gone)
            for fut in later:
                await self._failed(batch, ours[fut.key], fut, done, failed, lost)
            lost += self._groups.settle(sent, batch.nodes, done, failed, batch.deaths, explain)
            if lost and self.client.status != "running":  # groups lost with the scheduler
                gone += lost
                lost = []
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a task without an ending
            log.exception("dask backend %r lost track of %d tasks", self.name, len(futures))
            message = f"Dask backend {self.name!r}: {exc!r}"
            for key in ours.values():
                if key not in done and self._futures.pop(key, None) is not None:
                    report.failed(key, BackendError(message))
            self._groups.fail_open(sent, report, lambda: BackendError(message))
            return
        await self._resubmit(batch, done, lost, gone, attempt + 1)

    def _cancelled(
        self,
        batch: Batch,
        key: str,
        fut: Any,
        done: Mapping[str, Any],
        attempt: int,
        gone: list[str],
    ) -> None:
        """A Dask future cancelled: by a cancel, or because the scheduler was lost."""
        node = batch.nodes[key]
        if not connection_lost(fut):
            self.context.reporter.cancelled(key, "cancelled on the Dask cluster")
        elif any(d in batch.nodes and d not in done for d in node.deps):
            return  # its lost dependency speaks for it
        elif attempt < node.options.retries:
            gone.append(key)
        else:
            self.context.reporter.failed(key, lost_error(node, self._seen, self.name))

    async def _resubmit(
        self, batch: Batch, done: Mapping[str, Any], lost: list[str], gone: list[str], attempt: int
    ) -> None:
        """Send again what died with a worker (now) or with the scheduler (once the
        client is connected again)."""
        if lost:
            log.warning("dask backend %r: resubmitting %s after a worker died", self.name, lost)
            try:
                self._send(batch.rerun(lost, done, self.name), attempt)
            except Exception as exc:  # never leave a task without an ending
                log.exception("dask backend %r could not resubmit %d tasks", self.name, len(lost))
                for key in lost:
                    self.context.reporter.failed(
                        key, BackendError(f"Dask backend {self.name!r}: {exc!r}")
                    )
        if gone:
            await self._after_reconnect(batch.rerun(gone, done, self.name), attempt)

    async def _after_reconnect(self, batch: Batch, attempt: int) -> None:
        log.warning(
            "dask backend %r: lost the scheduler at %s; %d task(s) wait for it to come back",
            self.name,
            self._seen,
            len(batch.nodes),
        )
        if await reconnected(self.client, self._connect_timeout):
            self._send(batch, attempt)
            return
        report = self.context.reporter
        for key, node in batch.nodes.items():
            if not any(d in batch.nodes for d in node.deps):
                report.failed(key, lost_error(node, self._seen, self.name, retried=True))

    async def _failed(
        self,
        batch: Batch,
        key: str,
        fut: Any,
        done: Mapping[str, Any],
        failed: set[str],
        lost: list[str],
    ) -> None:
        node = batch.nodes[key]
        # Dask errs every dependent of a failed task with the same error; only the
        # task that raised is reported, the executor ends the rest.
        if any(d in batch.nodes and d not in done for d in node.deps):
            return
        exc = await fut.exception()
        deaths = batch.deaths.get(key, 0)
        if worker_died(exc) and deaths < node.options.retries:
            batch.deaths[key] = deaths + 1
            lost.append(key)
        else:
            failed.add(key)
            self.context.reporter.failed(key, explain(exc, node))

    async def cancel(self, work: Work) -> None:
        """Returns once the scheduler has let go of the keys, so nothing that depended
        on them starts afterwards. The cancels of one loop turn share one message."""
        futures = await self._groups.cancel(work.nodes) if self._groups.members else []
        futures += [f for n in work.nodes if (f := self._futures.pop(n.key, None)) is not None]
        if not futures or self._client is None:
            return
        self._to_cancel.extend(futures)
        if self._cancelling is None:
            # Starts after the other cancels spawned this turn have queued theirs.
            self._cancelling = asyncio.ensure_future(self._cancel_batch())
        await asyncio.shield(self._cancelling)

    async def _cancel_batch(self) -> None:
        futures, self._to_cancel = self._to_cancel, []
        self._cancelling = None  # a cancel from now on starts the next batch
        try:
            # Dask sends "cancel-keys" on the client's batched stream and does not wait
            # for the scheduler: without the check below, a task that finishes right
            # after a cancel could still start the dependents the cancel was to stop.
            await self.client.cancel(futures)
            await self._until_let_go([f.key for f in futures])
        except Exception as exc:  # the cluster may be gone: nothing is left to stop
            log.warning(
                "dask backend %r: cancelling %d tasks failed: %r", self.name, len(futures), exc
            )

    async def _until_let_go(self, keys: list[str]) -> None:
        deadline = asyncio.get_running_loop().time() + CANCEL_CONFIRM_TIMEOUT
        pause = 0.005
        while True:
            states = await self.client.scheduler.get_task_status(keys=keys)
            keys = [k for k, st in states.items() if st in _IN_FLIGHT]
            if not keys:
                return
            if asyncio.get_running_loop().time() > deadline:
                log.warning(
                    "dask backend %r: the scheduler still runs %d cancelled tasks after "
                    "%s s (e.g. %s)",
                    self.name,
                    len(keys),
                    CANCEL_CONFIRM_TIMEOUT,
                    keys[0],
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def fetch(self, ref: Any) -> Any:
        ((ok, value),) = await self.fetch_many([ref])
        if not ok:
            raise value
        return value

    async def fetch_many(self, refs: Sequence[Any]) -> list[tuple[bool, Any]]:
        got = await fetch_refs(self.client, refs)
        # a value cancelled or lost with the scheduler fails the handle, not its awaiter
        seen, name = self._seen, self.name
        return [
            (ok, v if ok else value_error(v, ref, seen, name))
            for ref, (ok, v) in zip(refs, got, strict=True)
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watcher in list(self._watchers):
            watcher.cancel()
        self._groups.detach()
        open_work = [*self._futures.values(), *self._groups.open_futures()]
        if open_work and self._client is not None:
            try:
                await self._client.cancel(open_work)
            except Exception as exc:  # the cluster may be gone already
                log.warning("dask backend %r: cancelling open work failed: %r", self.name, exc)
        self._futures.clear()
        if self._own_client and self._client is not None:
            await self._client.close()
        if self._own_cluster is not None:
            await self._own_cluster.close()

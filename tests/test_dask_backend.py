"""DaskExecutionBackend (issue 6): the conformance suite in-process and against real
``dask scheduler`` / ``dask worker`` processes, and what only Dask promises — tasks run on
workers, results between Dask partitions stay on the cluster, a killed worker is survived
with ``retries=1`` and fails clearly without, worker resources, executables on workers,
cancellation releases Dask futures, user clients/clusters are never closed, and a mixed
local + Dask + AI workflow.

The subprocess cluster (tests/dask_cluster.py) runs its scheduler with
``allowed-failures=0``: a worker death is a task failure at once and ``retries=`` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import py_compile
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dask_cluster
import pytest
from dask_cluster import (
    CLIENT_UNPICKLED,
    block_until,
    make_tracked,
    relabel,
    wait_running,
    where,
)

from asyncflow_graph import LocalExecutionBackend, WorkflowEngine
from asyncflow_graph.backends import NoopExecutionBackend
from asyncflow_graph.errors import (
    AsyncFlowGraphError,
    CommandFailedError,
    DependencyFailureError,
    PromptNotSupportedError,
)
from asyncflow_graph.executor.events import RunObserver
from asyncflow_graph.testing import BackendConformance, wait_for_path

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

# The cluster fixtures, registered in this module (tests/dask_cluster.py is not a conftest).
dask_subprocess_cluster = dask_cluster.dask_subprocess_cluster
subprocess_cluster = dask_cluster.subprocess_cluster
dask_local_cluster = dask_cluster.dask_local_cluster
dask_client = dask_cluster.dask_client

ROOT = Path(__file__).resolve().parent.parent
HPC_EXAMPLES = sorted((ROOT / "examples" / "dask_hpc").glob("*.py"))
T = 30.0  # generous bound for every wait (never a synchronization sleep)


def DaskBackend(**kwargs: Any) -> Any:  # noqa: N802 - stands for the class
    """``DaskExecutionBackend(**kwargs)``, imported when a test runs, so that this module
    is collected even before the backend exists."""
    from asyncflow_graph.backends import DaskExecutionBackend

    return DaskExecutionBackend(**kwargs)


@contextlib.asynccontextmanager
async def running(*backends: Any, work_dir: Path) -> AsyncIterator[WorkflowEngine]:
    # Awaited in this task (not through wait_for): see test_conformance's engine bug.
    flow = await WorkflowEngine.create(backend=list(backends), work_dir=work_dir)
    try:
        yield flow
    finally:
        await asyncio.wait_for(flow.shutdown(), T)


async def settle(aw: Any) -> Any:
    return await asyncio.wait_for(aw, T)


def _task_states(dask_scheduler: Any) -> dict[str, str]:
    return {str(k): ts.state for k, ts in dask_scheduler.tasks.items()}


async def worker_pids(client: Any) -> dict[str, int]:
    """address -> pid of every worker, through the backend's asynchronous client."""
    return dict(await client.run(os.getpid))


# --------------------------------------------------------------------------- conformance


class DaskConformance(BackendConformance):
    runs_prompts = False
    refuses_prompts = True
    runs_in_process = False  # tasks are serialized even to in-process workers
    interrupts_running = False  # a worker thread finishes what it started
    captures_stdio = True
    command_error = CommandFailedError
    T = 30.0


class TestDaskInProcessConformance(DaskConformance):
    """An embedded LocalCluster (threads of this process), created by the backend."""

    async def make_backends(self, tmp_path):
        return [
            DaskBackend(name=self.backend_name, n_workers=2, threads_per_worker=1, processes=False)
        ]


class TestDaskAddressConformance(DaskConformance):
    """The real scheduler + worker processes, by address."""

    @pytest.fixture
    async def backends(self, dask_subprocess_cluster):
        return [DaskBackend(name=self.backend_name, address=dask_subprocess_cluster.address)]


class TestDaskSchedulerFileConformance(DaskConformance):
    """The real scheduler + worker processes, through the scheduler file."""

    @pytest.fixture
    async def backends(self, dask_subprocess_cluster):
        return [
            DaskBackend(
                name=self.backend_name,
                scheduler_file=str(dask_subprocess_cluster.scheduler_file),
            )
        ]


# --------------------------------------------------------------------------- on workers


async def test_tasks_run_on_in_process_workers(tmp_path):
    backend = DaskBackend(name="dask", n_workers=2, threads_per_worker=1, processes=False)
    async with running(backend, work_dir=tmp_path) as flow:
        client = backend.client
        assert isinstance(client, distributed.Client) and client.asynchronous
        on_worker = flow.function_task(where, backend="dask")
        seen = await settle(asyncio.gather(*(on_worker() for _ in range(6))))
        workers = await worker_pids(client)
        assert len(workers) == 2
        assert {address for address, _, _ in seen} <= workers.keys()


async def test_tasks_run_on_worker_processes(dask_subprocess_cluster, tmp_path):
    backend = DaskBackend(name="dask", address=dask_subprocess_cluster.address)
    async with running(backend, work_dir=tmp_path) as flow:
        assert backend.client.asynchronous
        on_worker = flow.function_task(where, backend="dask")
        seen = await settle(asyncio.gather(*(on_worker() for _ in range(6))))
        by_name = await asyncio.to_thread(dask_subprocess_cluster.workers)
        pids = await worker_pids(backend.client)
        for address, name, pid in seen:
            assert by_name[name] == address
            assert pids[address] == pid != os.getpid()


# --------------------------------------------------------------------------- stays remote


class PlanRecorder(RunObserver):
    def __init__(self) -> None:
        self.plans: list[Any] = []

    def on_plan(self, plan: Any) -> None:
        self.plans.append(plan)


@pytest.mark.parametrize("split", ["two-batches", "other-backend-between"])
async def test_intermediate_between_dask_partitions_stays_on_cluster(
    dask_subprocess_cluster, tmp_path, split
):
    """A -> B on Dask, in two Dask partitions: A's result goes from worker to worker
    and is never deserialized here; B's, which is awaited, is."""
    tag = uuid.uuid4().hex[:8]
    first, final = f"intermediate-{tag}", f"final-{tag}"
    backends = [
        DaskBackend(name="dask", address=dask_subprocess_cluster.address),
        LocalExecutionBackend(name="local"),
    ]
    async with running(*backends, work_dir=tmp_path) as flow:
        recorder = PlanRecorder()
        flow.add_observer(recorder)
        make = flow.function_task(make_tracked, backend="dask")
        rel = flow.function_task(relabel, backend="dask")
        a = make(first)
        if split == "two-batches":
            await asyncio.sleep(0)  # end this loop turn: `a` is compiled and submitted alone
            b = rel(a, final)
            await asyncio.sleep(0)
            assert [a.key in p.nodes for p in recorder.plans] == [True, False]
            assert [b.key in p.nodes for p in recorder.plans] == [False, True]
        else:
            # A small Dask result feeds a local task that feeds B: the path
            # dask -> local -> dask splits the Dask tasks into two partitions, and the
            # local task never sees A.
            small = flow.function_task(lambda: 1, backend="dask")()
            bump = flow.function_task(lambda x: x + 1, backend="local")(small)
            b = rel(a, final, bump)
            plan = flow.compile(b)
            part_of = {k: p.id for p in plan.partitions for k in p.keys}
            assert plan.backend_of[a.key] == plan.backend_of[b.key] == "dask"
            assert part_of[a.key] != part_of[b.key]
        result = await settle(b)
        assert result.label == f"{final}<-{first}"
        assert first not in CLIENT_UNPICKLED, "the intermediate result was pulled to the client"
        assert result.label in CLIENT_UNPICKLED


# --------------------------------------------------------------------------- dying workers


async def test_killed_worker_with_retries_finishes_the_workflow(subprocess_cluster, tmp_path):
    cluster = subprocess_cluster
    started, gate = tmp_path / "started", tmp_path / "gate"
    async with running(DaskBackend(name="dask", address=cluster.address), work_dir=tmp_path) as (
        flow
    ):
        opts = {"backend": "dask", "retries": 1}
        square = flow.function_task(lambda x: x * x, **opts)
        blocker = flow.function_task(block_until, **opts)
        total = flow.function_task(lambda pid, *xs: (pid, sum(xs)), **opts)
        xs = [square(i) for i in range(6)]
        b = blocker(str(started), str(gate))
        t = total(b, *xs)
        try:
            await wait_for_path(started, T)
            victim = int(started.read_text())
            await asyncio.to_thread(cluster.kill_worker_process, victim)
        finally:
            gate.touch()
        pid, s = await settle(t)
        assert s == sum(i * i for i in range(6))
        assert pid != victim, "the task was rerun on a live worker"
        assert b.state == t.state == "DONE"


async def test_killed_worker_without_retries_fails_clearly(subprocess_cluster, tmp_path):
    cluster = subprocess_cluster
    started, gate = tmp_path / "started", tmp_path / "gate"
    async with running(DaskBackend(name="dask", address=cluster.address), work_dir=tmp_path) as (
        flow
    ):
        b = flow.function_task(block_until, backend="dask")(str(started), str(gate))
        dep = flow.function_task(lambda x: x, backend="dask")(b)
        try:
            await wait_for_path(started, T)
            # b and dep run as one Dask task (a fused chain): the death is b's once
            # its worker told the client b runs long (before that, nobody is charged
            # and the chain runs again)
            await wait_running(b, T)
            await asyncio.to_thread(cluster.kill_worker_process, int(started.read_text()))
            with pytest.raises(Exception) as info:
                await settle(b)  # no hang: the death is reported
        finally:
            gate.touch()
        exc = info.value
        from distributed.scheduler import KilledWorker

        assert isinstance(exc, AsyncFlowGraphError | KilledWorker), repr(exc)
        assert not isinstance(exc, DependencyFailureError)
        assert "worker" in str(exc).lower()
        assert b.state == "FAILED"
        with pytest.raises(DependencyFailureError) as dinfo:
            await settle(dep)
        assert dinfo.value.root_cause is exc
        assert await settle(flow.function_task(lambda: "alive", backend="dask")()) == "alive"


# --------------------------------------------------------------------------- who closes what


async def test_user_client_is_not_closed(dask_client, tmp_path):
    backend = DaskBackend(name="dask", client=dask_client)
    async with running(backend, work_dir=tmp_path) as flow:
        assert backend.client is dask_client
        assert await settle(flow.function_task(lambda: 42, backend="dask")()) == 42
    assert dask_client.status == "running"
    assert await settle(dask_client.submit(operator.add, 1, 2)) == 3


async def test_user_cluster_is_not_closed(dask_local_cluster, tmp_path):
    from distributed.core import Status

    backend = DaskBackend(name="dask", cluster=dask_local_cluster)
    async with running(backend, work_dir=tmp_path) as flow:
        assert backend.client.asynchronous
        assert backend.client.scheduler.address == dask_local_cluster.scheduler_address
        assert await settle(flow.function_task(lambda: 42, backend="dask")()) == 42
    assert backend.client.status == "closed", "the backend closes the client it created"
    assert dask_local_cluster.status == Status.running
    async with distributed.Client(
        dask_local_cluster.scheduler_address, asynchronous=True, set_as_default=False
    ) as c:
        assert await settle(c.submit(operator.add, 2, 2)) == 4


async def test_embedded_cluster_is_closed(tmp_path):
    backend = DaskBackend(name="dask", n_workers=1, threads_per_worker=1, processes=False)
    async with running(backend, work_dir=tmp_path) as flow:
        address = backend.client.scheduler.address
        assert await settle(flow.function_task(lambda: 42, backend="dask")()) == 42
    assert backend.client.status == "closed"
    with pytest.raises((OSError, TimeoutError)):
        c = await distributed.Client(address, asynchronous=True, timeout="2s", set_as_default=False)
        await c.close()


# --------------------------------------------------------------------------- placement


async def test_resources_route_tasks_to_the_gpu_worker(dask_subprocess_cluster, tmp_path):
    backend = DaskBackend(name="dask", address=dask_subprocess_cluster.address)
    async with running(backend, work_dir=tmp_path) as flow:
        on_worker = flow.function_task(where, backend="dask")
        prep = flow.function_task(lambda i: i, backend="dask")  # no resources: any worker
        need_gpu = {"resources": {"GPU": 1}}
        gpu = [on_worker(task_description=need_gpu) for _ in range(4)]
        # after a task without resources: a chain must not run on its head's worker
        gpu += [on_worker(prep(i), task_description=need_gpu) for i in range(4)]
        assert {name for _, name, _ in await settle(asyncio.gather(*gpu))} == {"w1"}


async def test_executable_runs_on_a_worker_with_capture_stdio(dask_subprocess_cluster, tmp_path):
    backend = DaskBackend(name="dask", address=dask_subprocess_cluster.address)
    async with running(backend, work_dir=tmp_path) as flow:

        @flow.executable_task(backend="dask", capture_stdio=True)
        def parent_pid():
            return "echo $PPID; echo to-stderr >&2"

        @flow.executable_task(backend="dask")
        def plain():
            return ["sh", "-c", "echo $PPID"]

        h = parent_pid()
        path = Path(await settle(h))
        assert path == tmp_path / flow.uid / f"{h.key}.stdout"
        assert path.with_suffix(".stderr").read_text() == "to-stderr\n"
        pids = set((await worker_pids(backend.client)).values())
        assert int(path.read_text()) in pids  # the shell's parent is a worker process
        assert int(await settle(plain())) in pids


# --------------------------------------------------------------------------- cancellation


async def test_cancel_releases_the_dask_futures(tmp_path):
    started, gate = tmp_path / "started", tmp_path / "gate"
    backend = DaskBackend(name="dask", n_workers=1, threads_per_worker=1, processes=False)
    async with running(backend, work_dir=tmp_path) as flow:
        client = backend.client
        b = flow.function_task(block_until, backend="dask")(str(started), str(gate))
        d = flow.function_task(lambda x: x, backend="dask")(b)
        try:
            await wait_for_path(started, T)
            assert "processing" in (await client.run_on_scheduler(_task_states)).values()
            assert b.cancel() is True
            for h in (b, d):
                with pytest.raises(asyncio.CancelledError):
                    await settle(h)
            # The scheduler forgets every key of the cancelled work.
            deadline = asyncio.get_running_loop().time() + T
            while states := await client.run_on_scheduler(_task_states):
                assert asyncio.get_running_loop().time() < deadline, states
                await asyncio.sleep(0.05)
        finally:
            gate.touch()
        assert await settle(flow.function_task(lambda: 1, backend="dask")()) == 1


async def test_cancels_of_one_turn_share_one_message_and_are_confirmed(tmp_path):
    """The backend's cancel returns once the scheduler has let go of the keys (Dask's
    own cancel only queues a message), and the cancels of one turn share a message.
    One Dask task per task here (coarsen=False): the scheduler logs its recursive
    cancel of a group's status task as one more event (tests/test_dask_coarsen.py
    covers cancels in groups)."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    backend = DaskBackend(
        name="dask", n_workers=1, threads_per_worker=1, processes=False, coarsen=False
    )
    async with running(backend, work_dir=tmp_path) as flow:
        client = backend.client
        handles = [
            flow.function_task(block_until, backend="dask")(str(started), str(gate), i)
            for i in range(8)
        ]
        try:
            await wait_for_path(started, T)
            assert all(h.cancel() for h in handles)
            await flow.settle(timeout=T)
            # No polling here: when the cancels returned, the scheduler had forgotten.
            assert await client.run_on_scheduler(_task_states) == {}
            events = await client.get_events(client.id)
            assert [e["count"] for _, e in events if e.get("action") == "cancel"] == [8]
        finally:
            gate.touch()


# --------------------------------------------------------------------------- mixed workflow


async def test_mixed_local_dask_and_noop_ai(dask_client, tmp_path):
    backends = [
        LocalExecutionBackend(name="local"),
        DaskBackend(name="dask", client=dask_client),
        NoopExecutionBackend(name="ai"),
    ]
    async with running(*backends, work_dir=tmp_path) as flow:

        @flow.function_task(backend="local")
        def chunks(n):
            return [list(range(i, i + 10)) for i in range(0, n, 10)]

        @flow.function_task(backend="dask")
        def partial_sum(parts, i):
            return sum(parts[i])

        @flow.function_task(backend="dask")
        def total(*sums):
            return sum(sums)

        @flow.prompt_task(backend="ai")
        def summarize(value):
            return f"summarize the total {value}"

        @flow.function_task(backend="local")
        def report(value, summary):
            return f"{value}: {summary}"

        @flow.prompt_task(backend="dask")
        def misrouted():
            return "a prompt for a compute backend"

        parts = chunks(50)
        t = total(*(partial_sum(parts, i) for i in range(5)))
        out = report(t, summarize(t))
        assert await settle(out) == f"{sum(range(50))}: Dummy Prompt Output"

        bad = misrouted()
        with pytest.raises(PromptNotSupportedError) as info:
            await settle(bad)
        assert "'dask'" in str(info.value)


# --------------------------------------------------------------------------- the HPC page


def test_hpc_examples_compile():
    assert HPC_EXAMPLES, "docs/dask_hpc.md shows examples/dask_hpc/*.py"
    for path in HPC_EXAMPLES:
        py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize(
    ("example", "shows"),
    [
        ("scheduler_file.py", "workers: 2"),
        ("gpu_resources.py", "trained 4 folds on GPU workers ['w1']"),
        ("ownership.py", "client still running"),
    ],
)
@pytest.mark.timeout(150)
def test_hpc_example_runs(dask_subprocess_cluster, tmp_path, example, shows):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["SCHEDULER_FILE"] = str(dask_subprocess_cluster.scheduler_file)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dask_hpc" / example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        # A fresh interpreter importing distributed: seconds alone, far more on a
        # loaded 2-core machine (a bound, not a wait).
        timeout=4 * T,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert shows in lines and lines[-1] == "done", proc.stdout

"""Dask clusters for the tests: real ``dask scheduler`` / ``dask worker`` processes on
127.0.0.1, an in-process ``LocalCluster``, and helpers (kill a worker mid-run, objects that
record where they are unpickled).

This module is importable, not a conftest: a test module imports the fixtures it uses
explicitly (``from dask_cluster import dask_subprocess_cluster  # noqa: F401``). The worker
processes get ``tests/`` and the repository on their ``PYTHONPATH``, so functions and classes
defined in test modules ship to them by reference.

The subprocess scheduler runs with ``distributed.scheduler.allowed-failures = 0``: when a
worker dies while running a task, Dask does not silently reschedule it; the task errs with
``KilledWorker`` at once, and the task's own ``retries=`` option decides what happens next.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from asyncflow_graph.testing import announce_pid

__all__ = [
    "CLIENT_UNPICKLED",
    "DaskSubprocessCluster",
    "Tracked",
    "block_until",
    "dask_client",
    "dask_local_cluster",
    "dask_subprocess_cluster",
    "make_tracked",
    "relabel",
    "subprocess_cluster",
    "wait_running",
    "where",
]

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

#: (name, resources) of the workers the session cluster starts
DEFAULT_WORKERS: tuple[tuple[str, Mapping[str, float]], ...] = (
    ("w1", {"GPU": 1}),
    ("w2", {}),
)


class DaskSubprocessCluster:
    """A ``dask scheduler`` and ``dask worker`` processes (one nanny + one single-threaded
    worker process each) on 127.0.0.1, found through a scheduler file.

    Every process is started in its own session, so ``close()`` can stop a nanny and the
    worker process under it together; ``close()`` always runs, even after a failed start.
    A worker process killed with :meth:`kill_worker_process` is restarted by its nanny;
    :meth:`wait_for_workers` waits until every named worker is back."""

    def __init__(
        self,
        directory: Path,
        workers: tuple[tuple[str, Mapping[str, float]], ...] = DEFAULT_WORKERS,
        *,
        allowed_failures: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.worker_specs = workers
        self.allowed_failures = allowed_failures
        self.scheduler_file = self.directory / "scheduler.json"
        self.address = ""
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.nannies: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(TESTS), str(REPO), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(self.allowed_failures)
        return env

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *argv],
            cwd=self.directory,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, timeout: float = 60.0) -> DaskSubprocessCluster:
        deadline = time.monotonic() + timeout
        self.directory.mkdir(parents=True, exist_ok=True)
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--scheduler-file",
                str(self.scheduler_file),
                "--no-dashboard",
                # the HTTP server (health, metrics) still starts: keep it off port 8787
                "--dashboard-address",
                "127.0.0.1:0",
            ],
        )
        self.address = self._read_scheduler_file(deadline)
        for name, resources in self.worker_specs:
            self.start_worker(name, resources)
        self.wait_for_workers(timeout=max(1.0, deadline - time.monotonic()))
        return self

    def start_worker(self, name: str, resources: Mapping[str, float] | None = None) -> None:
        argv = [
            "worker",
            "--scheduler-file",
            str(self.scheduler_file),
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--name",
            name,
            "--no-dashboard",
            "--death-timeout",
            "60",
            "--local-directory",
            str(self.directory / name),
        ]
        if resources:
            argv += ["--resources", " ".join(f"{k}={v}" for k, v in resources.items())]
        self.nannies[name] = self._spawn(name, argv)

    def _read_scheduler_file(self, deadline: float) -> str:
        assert self.scheduler is not None
        while True:
            if self.scheduler.poll() is not None:
                raise RuntimeError(
                    f"dask scheduler exited with status {self.scheduler.returncode}:\n"
                    f"{self.log_tail('scheduler')}"
                )
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                address = json.loads(self.scheduler_file.read_text()).get("address")
                if address:
                    return str(address)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduler file:\n{self.log_tail('scheduler')}")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every process: SIGTERM to each process group, wait, then SIGKILL."""
        procs = [*self.nannies.values(), *([self.scheduler] if self.scheduler else [])]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(timeout=15)
            # the nanny's worker child may outlive a nanny that died first
            _signal_group(p, signal.SIGKILL)
        self.nannies.clear()
        self.scheduler = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.directory / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- inspection ---------------------------------------------------------------------

    @contextlib.contextmanager
    def client(self, timeout: float = 30.0) -> Iterator[Any]:
        """A synchronous ``distributed.Client`` (its own loop thread): for use outside
        the test's event loop, or through ``asyncio.to_thread`` inside it."""
        from distributed import Client

        client = Client(self.address, timeout=f"{timeout}s", set_as_default=False)
        try:
            yield client
        finally:
            client.close()

    def workers(self) -> dict[str, str]:
        """name -> address of the workers the scheduler knows now."""
        with self.client() as c:
            return dict(c.run_on_scheduler(_worker_names))

    def worker_pids(self) -> dict[str, int]:
        """address -> pid of every connected worker process."""
        with self.client() as c:
            return dict(c.run(os.getpid))

    def wait_for_workers(
        self, names: tuple[str, ...] | None = None, timeout: float = 60.0
    ) -> dict[str, str]:
        """Wait until every named worker (all by default) is connected; name -> address."""
        wanted = set(names or (n for n, _ in self.worker_specs))
        deadline = time.monotonic() + timeout
        with self.client(timeout=timeout) as c:
            while True:
                for name, p in self.nannies.items():
                    if p.poll() is not None:
                        raise RuntimeError(
                            f"dask worker {name} exited with status {p.returncode}:\n"
                            f"{self.log_tail(name)}"
                        )
                known = dict(c.run_on_scheduler(_worker_names))
                if wanted <= known.keys():
                    return known
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"workers {sorted(wanted - known.keys())} did not connect within "
                        f"{timeout} s:\n"
                        + "\n".join(self.log_tail(n) for n in sorted(wanted - known.keys()))
                    )
                time.sleep(0.05)

    def kill_worker_process(self, pid: int) -> None:
        """SIGKILL a worker process of this cluster (as an OOM killer or a node failure
        would); its nanny starts a fresh one under the same name."""
        import psutil

        ours = {
            child.pid
            for p in self.nannies.values()
            if p.poll() is None
            for child in psutil.Process(p.pid).children(recursive=True)
        }
        if pid not in ours:
            raise ValueError(f"pid {pid} is not a worker process of this cluster {sorted(ours)}")
        os.kill(pid, signal.SIGKILL)


def _worker_names(dask_scheduler: Any) -> dict[str, str]:
    return {str(ws.name): addr for addr, ws in dask_scheduler.workers.items()}


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def dask_subprocess_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real scheduler + workers ``w1`` (resources GPU=1) and ``w2`` on 127.0.0.1, for
    the whole session. Tests that kill workers use :func:`subprocess_cluster` instead."""
    pytest.importorskip("distributed")
    cluster = DaskSubprocessCluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def subprocess_cluster(dask_subprocess_cluster: DaskSubprocessCluster) -> Iterator[Any]:
    """The session cluster, checked healthy before the test and brought back to every
    worker connected after it (a test may kill worker processes)."""
    dask_subprocess_cluster.wait_for_workers()
    try:
        yield dask_subprocess_cluster
    finally:
        dask_subprocess_cluster.wait_for_workers()


@pytest.fixture(scope="session")
def dask_local_cluster() -> Iterator[Any]:
    """An in-process ``LocalCluster`` (two single-threaded workers, tcp on 127.0.0.1) that
    runs on its own loop thread: usable from any test's event loop through its
    ``scheduler_address``, and what a user would hand over as ``cluster=``."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
        # no dashboard, and its HTTP server (health, metrics) on a free port, not 8787
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def dask_client(dask_local_cluster: Any) -> AsyncIterator[Any]:
    """An asynchronous ``Client`` of ``dask_local_cluster`` on the test's event loop."""
    from distributed import Client

    client = await Client(
        dask_local_cluster.scheduler_address, asynchronous=True, set_as_default=False
    )
    try:
        yield client
    finally:
        await client.close()


# --------------------------------------------------------------------------- task helpers
# Module-level, so the worker processes (tests/ on their path) import them by reference.

#: labels of Tracked objects unpickled in this process outside a Dask task
CLIENT_UNPICKLED: list[str] = []


class Tracked:
    """A result that records where it is deserialized: unpickling it in this process
    outside a running Dask task (that is, in the client) appends its label to
    :data:`CLIENT_UNPICKLED`. Unpickling in a worker process records nothing here."""

    def __init__(self, label: str, size: int = 1024) -> None:
        self.label = label
        self.payload = b"x" * size

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        from distributed import get_worker

        try:
            get_worker()
        except ValueError:
            CLIENT_UNPICKLED.append(self.label)


def make_tracked(label: str) -> Tracked:
    return Tracked(label)


def relabel(t: Tracked, label: str, *_: Any) -> Tracked:
    return Tracked(f"{label}<-{t.label}")


def block_until(started: str, gate: str, *_: Any, limit: float = 60.0) -> int:
    """Write this process's pid to ``started``, then block (a plain function: it holds a
    worker thread) until ``gate`` exists; return the pid."""
    announce_pid(started)
    deadline = time.monotonic() + limit
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} was never opened")
        time.sleep(0.005)
    return os.getpid()


async def wait_running(handle: Any, timeout: float) -> None:
    """Poll until ``handle`` shows RUNNING: a task inside a group (a Dask task that runs
    several of ours) does once its worker has told the client it runs long."""
    import asyncio

    deadline = time.monotonic() + timeout
    while handle.state != "RUNNING":
        if time.monotonic() > deadline or handle.done():
            raise AssertionError(f"{handle!r} did not show RUNNING within {timeout} s")
        await asyncio.sleep(0.01)


def where(*_: Any) -> tuple[str, str, int]:
    """(worker address, worker name, pid) of the worker running this task (arguments,
    e.g. upstream results, are ignored)."""
    from distributed import get_worker

    w = get_worker()
    return str(w.address), str(w.name), os.getpid()

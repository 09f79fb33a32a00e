"""The embedded LocalCluster refuses strangers (TLS with temporary credentials) and
runs no HTTP server unless asked: checked with real scheduler and worker processes,
real sockets and a second client on the same machine."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from asyncflow_graph import WorkflowEngine

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")
psutil = pytest.importorskip("psutil")

from asyncflow_graph.backends.dask import DaskExecutionBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _listening_ports() -> list[int]:
    """TCP ports this process and its children (the workers) listen on."""
    me = psutil.Process()
    pids = {me.pid, *(c.pid for c in me.children(recursive=True))}
    return sorted(
        {
            c.laddr.port
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids
        }
    )


async def _answers_http(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            await client.get(f"http://127.0.0.1:{port}/health", timeout=3)
        except httpx.HTTPError:
            return False
    return True


@pytest.fixture
async def secured(tmp_path):
    before = set(_listening_ports())  # other tests' servers in this process
    backend = DaskExecutionBackend(n_workers=1, threads_per_worker=1)
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    backend.ports_before = before
    try:
        yield flow, backend
    finally:
        await flow.shutdown()


async def test_a_second_local_client_is_refused(secured):
    flow, backend = secured
    assert await asyncio.wait_for(flow.function_task(os.getpid)(), 30) != os.getpid()
    address = backend.client.scheduler.address
    assert address.startswith("tls://127.0.0.1:")
    # another user on the node: plain TCP, no credentials, or TLS credentials of its own
    strangers = [
        {"address": address.replace("tls://", "tcp://")},
        {"address": address, "security": distributed.security.Security.temporary()},
    ]
    for stranger in strangers:
        with pytest.raises((OSError, TimeoutError, distributed.comm.CommClosedError)):
            client = await distributed.Client(
                stranger["address"],
                security=stranger.get("security"),
                asynchronous=True,
                timeout=3,
            )
            await client.close()  # pragma: no cover - reached only if it got in
    assert await asyncio.wait_for(flow.function_task(os.getpid)(), 30) != os.getpid()


async def test_no_http_server_unless_asked(secured):
    flow, backend = secured
    assert await asyncio.wait_for(flow.function_task(os.getpid)(), 30) != os.getpid()
    ports = sorted(set(_listening_ports()) - backend.ports_before)  # the cluster's own
    assert len(ports) >= 2  # the scheduler's and the worker's own TLS ports
    assert 8787 not in ports
    assert [p for p in ports if await _answers_http(p)] == []


async def test_security_false_accepts_any_local_client(tmp_path):
    backend = DaskExecutionBackend(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", security=False
    )
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        address = backend.client.scheduler.address
        assert address.startswith("tcp://")
        client = await distributed.Client(address, asynchronous=True, timeout=10)
        await client.close()
    finally:
        await flow.shutdown()

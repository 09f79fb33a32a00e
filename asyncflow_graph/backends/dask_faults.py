"""A Dask scheduler that goes away mid-run (killed, its node lost, its job ended).

distributed cancels every future of a client that lost its scheduler (reason
``scheduler-connection-lost``). Reported as cancellations, those tasks would end
CANCELLED: ``retries=`` would never apply and ``await`` would raise
``CancelledError``. Here each becomes a failure, a
:class:`~asyncflow_graph.errors.BackendError` naming the scheduler's address; a task
with retries left waits (up to the backend's ``connect_timeout``) for the client
to reconnect — a scheduler restarted at the same address — and is sent again.

A value that stayed on the cluster is lost with it: fetching it raises the same
kind of error, so a handle's ``await`` and its state agree (FAILED).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from ..errors import BackendError
from ..spec import Node

__all__ = ["LOST", "connection_lost", "lost_error", "reconnected", "value_error"]

#: distributed's cancel reason when a client loses its scheduler
LOST = "scheduler-connection-lost"


def connection_lost(fut: Any) -> bool:
    """Whether a cancelled Dask future was cancelled because the scheduler was lost."""
    state = getattr(fut, "_state", None)  # FutureState: holds the cancel's reason
    return getattr(getattr(state, "exception", None), "reason", None) == LOST


def lost_error(node: Node, address: str, backend: str, *, retried: bool = False) -> BackendError:
    if retried:
        what = "and it did not come back within connect_timeout= to run it again"
    else:
        what = "give the task retries= to run it again once a scheduler is back at that address"
    return BackendError(
        f"task {node.name!r} [{node.key}] was lost with the Dask scheduler at {address} "
        f"(backend {backend!r}): the connection to it broke ({what})"
    )


async def reconnected(client: Any, timeout: float) -> bool:
    """Wait until ``client`` is connected again (True) or gave up (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while client.status != "running":
        if client.status in ("closing", "closed") or loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def value_error(exc: BaseException, ref: Any, address: str, backend: str) -> BaseException:
    """What fetching ``ref`` failed with, for its handle: a value cancelled on the
    cluster or lost with the scheduler becomes a BackendError, since a cancellation
    would cancel the task awaiting it instead of failing the handle."""
    if not isinstance(exc, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        return exc
    fut = getattr(getattr(ref, "group", None), "future", ref)  # an element: its group's
    if connection_lost(fut):
        why = f"lost with the Dask scheduler at {address}"
    else:
        why = f"cancelled on the Dask cluster at {address}"
    err = BackendError(
        f"the value of Dask key {getattr(fut, 'key', ref)!r} (backend {backend!r}) was "
        f"{why}; run the task again to get it"
    )
    err.__cause__ = exc
    return err
